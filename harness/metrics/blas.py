"""How many BLAS threads the metrics' many small linear-algebra calls use."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

ONE_THREAD_SIDE = 2048  # matrices up to this side (pool3's dimension): one BLAS thread


def blas_threads_for(side: int) -> AbstractContextManager[object]:
    """One BLAS thread for linear algebra on matrices of side <= ONE_THREAD_SIDE (the bootstrap
    rounds, FID-infinity's subsets, KID's subsets). When the cores are shared (trials beside
    each other, other jobs), OpenMP threads waiting on each other make such calls many times
    slower; a second thread gains little when they are not. Measured on 2 cores beside other
    jobs, one thread against two: eigvalsh of 512 x 512, 10 ms against 280 ms; of 2048 x 2048,
    0.74 s against 4.4 s (0.42 s with two threads on idle cores); 100 FID rounds at N = 256,
    0.3 s against 20 s. Larger problems (the Gram and kernel matrices of N > 2048 images) keep
    every thread. threadpoolctl comes with scikit-learn, an mlflow dependency; without it,
    nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas") if side <= ONE_THREAD_SIDE else nullcontext()
