#include <mpi.h>

// Open MPI spells its predefined handles as macros over addresses of globals, which Swift cannot
// import: these return them.
static inline MPI_Comm vlmkit_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype vlmkit_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype vlmkit_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype vlmkit_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype vlmkit_mpi_int(void) { return MPI_INT; }
static inline MPI_Op vlmkit_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op vlmkit_mpi_max(void) { return MPI_MAX; }
static inline MPI_Errhandler vlmkit_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline void *vlmkit_mpi_in_place(void) { return MPI_IN_PLACE; }
