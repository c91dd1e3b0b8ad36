"""The TeamLeader's policy: the ordered list of rules every transition runs through."""

from __future__ import annotations

from devteam.orchestration.rules.base import Policy
from devteam.orchestration.rules.budgets import AddUsageToParents, StopRootOverBudget
from devteam.orchestration.rules.instrumentation import (
    CountTransitions,
    DelegateReadyWork,
    EnqueueReadyWork,
    ManageLeases,
    RecordStatusEvent,
)
from devteam.orchestration.rules.lifecycle import (
    AllowOnlyValidMoves,
    CancelIdleWorkAtOnce,
    CompleteParentWhenChildrenComplete,
    FailParentWhenChildFails,
    FinishCancellation,
    HonourCancellation,
    PropagateCancellation,
    StartParentWithFirstChild,
)
from devteam.orchestration.rules.planning import (
    EnforceComplexityBudget,
    RequireApproval,
    RouteByTaskType,
)
from devteam.orchestration.rules.retries import RetryFailedAttempts
from devteam.orchestration.rules.review import SendRequestedChangesBack
from devteam.orchestration.rules.scheduling import (
    LimitConcurrency,
    TimeOutQueueWait,
    WaitForDependencies,
    WaitForEarlierPhases,
    WaitForParentToRun,
    WaitForRetryBackoff,
)
from devteam.orchestration.rules.security import AuditWorkspaceTampering
from devteam.orchestration.rules.webhooks import QueueWebhookDelivery


def default_policy() -> Policy:
    return Policy(
        [
            # Guards: may reject, delay or rewrite.
            HonourCancellation(),
            AllowOnlyValidMoves(),
            CancelIdleWorkAtOnce(),
            RetryFailedAttempts(),
            EnforceComplexityBudget(),
            RouteByTaskType(),
            RequireApproval(),
            WaitForParentToRun(),
            WaitForEarlierPhases(),
            WaitForDependencies(),
            TimeOutQueueWait(),
            WaitForRetryBackoff(),
            LimitConcurrency(),
            # Reactions: follow-up transitions in the same transaction.
            AddUsageToParents(),
            StopRootOverBudget(),
            PropagateCancellation(),
            StartParentWithFirstChild(),
            SendRequestedChangesBack(),
            CompleteParentWhenChildrenComplete(),
            FailParentWhenChildFails(),
            FinishCancellation(),
            DelegateReadyWork(),
            QueueWebhookDelivery(),
            # Instrumentation.
            AuditWorkspaceTampering(),
            ManageLeases(),
            EnqueueReadyWork(),
            RecordStatusEvent(),
            CountTransitions(),
        ]
    )
