"""What the evaluation use cases refuse, in domain terms; ``service.errors`` answers them over HTTP."""

from service.domain_errors import Conflict, Invalid, NotFound


class EvaluationNotFound(NotFound):
    """No evaluation job has that id."""


class NoModelServed(Conflict):
    """This replica serves no model, so it cannot run an evaluation."""


class TaskMismatch(Conflict):
    """The served model's outputs cannot be scored against the test set (classification vs generation)."""


class EvaluationNotSucceeded(Conflict):
    """A comparison needs finished, succeeded evaluations."""


class PredictionsIncomplete(Conflict):
    """A job reached reduction without one prediction per test record."""


class NotRateable(Conflict):
    """Outputs and ratings are for succeeded generation evaluations whose test set still exists."""


class RatingsInvalid(Invalid):
    """Ratings name records the test set does not have, or lie outside its rating scale."""


class TooFewRatedSystems(Conflict):
    """Agreement between a metric and people needs at least three rated evaluations of one test-set version."""


class NoCalibration(NotFound):
    """The evaluation has no calibration: not a single-label classifier's, or its labels differ from the set's."""
