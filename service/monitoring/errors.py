"""What drift references, checks and feedback refuse, in domain terms; ``service.errors`` answers them."""

from service.domain_errors import Busy, Conflict, Invalid, NotFound


class ReferenceNotFound(NotFound):
    """No drift reference has that id."""


class CheckNotFound(NotFound):
    """No drift check has that id."""


class ReportDeleted(NotFound):
    """The check succeeded, but its report was dropped after HELDOUT_LOG_RETENTION."""


class ReportNotReady(Conflict):
    """Only a succeeded check has a report."""


class NoReference(Conflict):
    """A check needs a reference and none has been built yet."""


class ReferenceNeedsModel(Conflict):
    """A reference from a test set runs its inputs through the served model, and none is served."""


class ReferenceNeedsClassifier(Conflict):
    """Drift features (label, confidence, embedding) come from a classifier; a generator has none."""


class ModelNotNamed(Invalid):
    """A reference from traffic needs a model, and none was named or served."""


class TooFewRows(Invalid):
    """The window or test set holds fewer predictions than HELDOUT_DRIFT_MIN_ROWS."""


class NoDriftFeatures(Invalid):
    """The predictions carry none of the features a drift check compares."""


class CheckQueueFull(Busy):
    """This process already has MAX_PENDING drift checks queued or running."""


class FeedbackRejected(Invalid):
    """A feedback batch names unknown predictions or labels that cannot be scored; nothing was stored."""
