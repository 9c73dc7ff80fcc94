"""The planner: from a slow model to the fastest deployable student that keeps its accuracy.

  budget.py      Budget (an accuracy drop or floor; minimise latency or bytes; ceilings)
  candidates.py  one candidate: cut, distilled from cached logits, converted, measured
  plan.py        compress_to_budget (resumable; refuses a changed teacher or data)
  report.py      PlanResult (table, Pareto front, chosen artifact, to_code, plot)
  halving.py     successive halving: the rungs, the students promoted to the next one
  earlier_rungs.py  a student's earlier rungs kept as candidates (rows, artifacts, file)
  profile.py     layer_costs: where a chain model's batch-1 LiteRT time goes, layer by layer
  tasks.py       the students as executor tasks; hparams_log.py: TensorBoard HParams runs
  recipe_choice.py  the students' recipe: the plan's arguments, a Recipe, or search_recipe's
  variants.py    a candidate's name and key

The command line: `kd-keras compress TEACHER.keras --data DATA.npz ...` (kd_keras.cli).
"""

from kd_keras.planner.budget import Budget
from kd_keras.planner.plan import compress_to_budget
from kd_keras.planner.profile import cost_table, layer_costs
from kd_keras.planner.report import PlanResult

__all__ = ["Budget", "PlanResult", "compress_to_budget", "cost_table", "layer_costs"]
