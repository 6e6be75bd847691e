/* Fault-injection shim over the OpenCL API (tests/fault/clshim.c).
 *
 * Linked into a test executable, the shim defines the OpenCL entry points the
 * library calls; the library's references (binv-cl-static) bind to them at
 * link time and each one forwards to the real implementation (the ICD loader,
 * found with dlsym(RTLD_NEXT)).  While the shim is armed it
 *  - counts every fallible call (everything but clRelease*) and fails the
 *    N-th one with an error the call may return (CL_MEM_OBJECT_ALLOCATION_FAILURE
 *    for buffer creation, CL_OUT_OF_RESOURCES for builds, enqueues, kernel
 *    arguments and waits, CL_OUT_OF_HOST_MEMORY for the rest), without calling
 *    the real function;
 *  - counts the references the armed code holds on every OpenCL object
 *    (+1 create or retain, -1 release), so that an object the library forgot
 *    shows as a reference left after binv_context_destroy;
 *  - with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,
 *    --wrap=strdup on the link, counts the host blocks allocated while armed
 *    and not freed (the wrap applies to the test's objects and the static
 *    library, never to the OpenCL implementation's own allocations).
 * The test arms the shim around library calls only, so its own setup and
 * read-backs are neither counted nor failed. */
#ifndef BINV_TESTS_CLSHIM_H
#define BINV_TESTS_CLSHIM_H

#include <stddef.h>

/* Arms (1) or disarms (0) counting and fault injection. */
void clshim_arm(int on);
/* Fail the n-th fallible call from now on (1-based); 0 = never. */
void clshim_fail_at(unsigned long n);
/* Fallible calls counted since the last clshim_reset. */
unsigned long clshim_calls(void);
/* Whether the planned fault has fired, the call it hit and its error. */
int clshim_fired(const char **name, int *error);
/* Clears the call counter and the fault plan (not the object/heap ledgers). */
void clshim_reset(void);
/* Forgets every object balance and tracked host block (after a reported leak,
 * so that the next run starts from a clean ledger). */
void clshim_ledger_clear(void);
/* Objects with a non-zero armed reference balance; prints up to `max` of
 * them to stderr with their kind and balance when verbose. */
long clshim_objects_outstanding(int verbose);
/* Host blocks allocated while armed and not yet freed (needs --wrap). */
long clshim_heap_outstanding(void);
/* 1 when the malloc wrappers are linked in (heap accounting active). */
int clshim_heap_tracking(void);

#endif
