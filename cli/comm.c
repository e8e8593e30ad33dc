/* comm.c — the processes of an `mpirun` job for `ecr train`, `embed` and `eval`: MPI is
 * started when the environment says an MPI launcher started us (Open MPI, MPICH, PMIx), and
 * the library gets an ecr_comm over MPI_COMM_WORLD. Without a launcher, or in a build
 * without MPI (no ECR_HAVE_MPI), there is one process and no communicator; a build without
 * MPI started by a launcher refuses, since N copies would each write the same output. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef ECR_HAVE_MPI
#include <mpi.h>
#endif

static ecr_comm comm;        /* size 0 until cli_comm_start found a job of several ranks */
static int launched_size;    /* the launcher's process count (1 without one)              */

/* The process count an MPI launcher gave us through the environment, or 1. */
static int launcher_size(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = getenv(keys[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

#ifdef ECR_HAVE_MPI
static int sum_f32(void *ctx, float *x, size_t n) {
    (void)ctx;
    return MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS;
}
static int sum_f64(void *ctx, double *x, size_t n) {
    (void)ctx;
    return MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS;
}
static int gather_f32(void *ctx, const float *mine, float *all, const int *counts) {
    (void)ctx;
    int size = comm.size, *displ = malloc((size_t)size * sizeof *displ);
    if (!displ) return 1;
    for (int r = 0, at = 0; r < size; at += counts[r++]) displ[r] = at;
    int rc = MPI_Allgatherv(mine, counts[comm.rank], MPI_FLOAT, all, counts, displ, MPI_FLOAT, MPI_COMM_WORLD);
    free(displ);
    return rc != MPI_SUCCESS;
}
static int bcast(void *ctx, void *x, size_t n, int root) {
    (void)ctx;
    return MPI_Bcast(x, (int)n, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS;
}
#endif

int cli_comm_start(int *argc, char ***argv) {
    launched_size = launcher_size();
#ifdef ECR_HAVE_MPI
    if (launched_size > 1) {
        int provided = 0;
        /* collectives come from the main thread only, between OpenMP regions */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            fprintf(stderr, "ecr: MPI_Init failed\n");
            return 1;
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &comm.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &comm.size);
        comm.sum_f32 = sum_f32;
        comm.sum_f64 = sum_f64;
        comm.gather_f32 = gather_f32;
        comm.bcast = bcast;
    }
#else
    (void)argc, (void)argv;
#endif
    return 0;
}

const ecr_comm *cli_comm(void) { return comm.size > 1 ? &comm : NULL; }

int cli_comm_check(const char *cmd, int parallel) {
    if (launched_size <= 1 || (parallel && comm.size > 1)) return 0;
    if (cli_comm_rank() == 0) {
        if (comm.size > 1)
            fprintf(stderr, "ecr %s: runs as one process; start it without mpirun (train, embed and eval "
                            "run across processes)\n", cmd);
        else
            fprintf(stderr, "ecr %s: started by an MPI launcher with %d processes, but this ecr was built "
                            "without MPI (apt-get install libopenmpi-dev, then make)\n", cmd, launched_size);
    }
    return 2;
}

int cli_comm_rank(void) { return comm.size > 1 ? comm.rank : 0; }

const char *cli_comm_library(void) {
#ifdef ECR_HAVE_MPI
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    if (!v[0] && MPI_Get_library_version(v, &n) == MPI_SUCCESS) v[strcspn(v, ",\n")] = 0; /* first clause */
    return v[0] ? v : "MPI";
#else
    return "none (one process; apt-get install libopenmpi-dev for mpirun)";
#endif
}

int cli_comm_end(int rc) {
#ifdef ECR_HAVE_MPI
    if (comm.size > 1) {
        if (rc != 0) MPI_Abort(MPI_COMM_WORLD, rc); /* the others may wait in a collective */
        MPI_Finalize();
    }
#endif
    return rc;
}
