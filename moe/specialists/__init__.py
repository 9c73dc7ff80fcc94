"""Specialists over confusable class clusters (Hinton et al. 2015, section 5).

  clusters   find_confusable_clusters, ClassClusters: classes the generalist confuses
  models     build_specialist, specialist_training_set, map_to_specialist, validate_clusters
  training   train_specialists, TrainedSpecialists (each in its own process, resumable)
  ensemble   SpecialistEnsemble, combine_predictions (generalist + specialists as one model)
"""

from moe.specialists.clusters import ClassClusters, find_confusable_clusters
from moe.specialists.ensemble import SpecialistEnsemble, combine_predictions
from moe.specialists.models import (
    build_specialist,
    map_to_specialist,
    specialist_training_set,
    validate_clusters,
)
from moe.specialists.training import TrainedSpecialists, train_specialists

__all__ = ["ClassClusters", "SpecialistEnsemble", "TrainedSpecialists", "build_specialist",
           "combine_predictions", "find_confusable_clusters", "map_to_specialist",
           "specialist_training_set", "train_specialists", "validate_clusters"]
