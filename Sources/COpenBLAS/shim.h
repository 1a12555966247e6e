#include <cblas.h>

/* Exported by OpenBLAS's pthread build but not declared in cblas.h: re-read the OPENBLAS_*
   environment variables, and stop / restart the worker threads (which read the idle-spin
   length, OPENBLAS_THREAD_TIMEOUT, when they start). See TensorCore/OpenBLASIdleSpin.swift. */
void openblas_read_env(void);
int openblas_thread_timeout(void);
int blas_thread_shutdown_(void);
int blas_thread_init(void);
