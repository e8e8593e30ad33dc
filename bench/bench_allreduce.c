/* bench_allreduce.c — the time of the gradient sum alone: MPI_Allreduce of n floats in
 * place, in buckets of ECR_COMM_BUCKET floats as the trainer sums its gradient, after a
 * barrier (so that no rank's wait for another is counted), best of 10 after 3 warm-ups.
 * bench_mpi.sh runs it under mpirun with each preset's parameter count and sets it beside
 * the communication time the trainer logs, which includes that wait.
 *
 *   mpirun -np N bench_allreduce COUNT...   prints "COUNT SECONDS" per count (rank 0)
 *
 * Run directly (as `make bench` runs every bench_*), or built without MPI, it says so and
 * exits 0. */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef ECR_HAVE_MPI
#include <mpi.h>

int main(int argc, char **argv) {
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_SIZE")) {
        printf("bench_allreduce: runs under mpirun (bench_mpi.sh starts it)\n");
        return 0;
    }
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int a = 1; a < argc; a++) {
        size_t n = (size_t)strtoull(argv[a], NULL, 10);
        float *x = malloc((n ? n : 1) * sizeof *x);
        if (!x) MPI_Abort(MPI_COMM_WORLD, 1);
        for (size_t i = 0; i < n; i++) x[i] = 1e-3f * (float)(i % 1000);
        double best = 1e30;
        for (int rep = 0; rep < 13; rep++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            for (size_t i = 0; i < n; i += ECR_COMM_BUCKET) {
                size_t k = n - i < ECR_COMM_BUCKET ? n - i : ECR_COMM_BUCKET;
                MPI_Allreduce(MPI_IN_PLACE, x + i, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            }
            double t = MPI_Wtime() - t0;
            if (rep >= 3 && t < best) best = t;
        }
        if (rank == 0) printf("%zu %.6f\n", n, best);
        free(x);
    }
    MPI_Finalize();
    return 0;
}
#else
int main(void) {
    printf("bench_allreduce: SKIP (built without MPI)\n");
    return 0;
}
#endif
