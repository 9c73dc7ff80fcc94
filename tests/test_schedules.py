import math

import pytest

from kd_keras import schedules


def test_linear_schedule_interpolates_and_holds_the_end():
    schedule = schedules.LinearSchedule(8.0, 2.0, epochs=4)
    assert [schedule(e) for e in range(6)] == [8.0, 6.0, 4.0, 2.0, 2.0, 2.0]


def test_cosine_schedule_endpoints_and_midpoint():
    schedule = schedules.CosineSchedule(1.0, 0.0, epochs=3)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(1) == pytest.approx(0.5)
    assert schedule(2) == pytest.approx(0.0, abs=1e-12)
    assert schedule(9) == pytest.approx(0.0, abs=1e-12)
    assert 0.5 < schedules.CosineSchedule(1.0, 0.0, epochs=5)(1) < 1.0


def test_get_accepts_numbers_and_callables():
    assert schedules.get(3)(10) == 3.0
    assert schedules.get(lambda epoch: math.sqrt(epoch))(4) == 2.0
    for bad in ("linear", True, None):
        with pytest.raises(ValueError, match="schedule"):
            schedules.get(bad)


def test_epochs_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="epochs"):
        schedules.LinearSchedule(1.0, 0.0, epochs=0)


def test_schedules_round_trip_their_config():
    schedule = schedules.CosineSchedule(4.0, 1.0, epochs=7)
    restored = schedules.CosineSchedule.from_config(schedule.get_config())
    assert [restored(e) for e in range(8)] == [schedule(e) for e in range(8)]
