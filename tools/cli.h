/* Small helpers shared by the command-line programs (binv-study, binv-bench):
 * device choice and listing, OpenCL set-up.  Not part of the library. */
#ifndef BINV_TOOLS_CLI_H
#define BINV_TOOLS_CLI_H

#include <stdio.h>

#include "binv/binv.h"

typedef struct cli_device {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    char name[256];
    char platform_name[256];
    cl_device_type type;
} cli_device;

/* spec: "gpu", "cpu", "P:D" (platform and device index) or NULL/"" for the
 * default: the environment's BINV_DEVICE, else the first GPU of any platform,
 * else the first device.  Creates a context and an in-order queue (with
 * profiling enabled).  Returns 0, or -1 with a message on stderr. */
int cli_device_open(const char *spec, cli_device *out);
void cli_device_close(cli_device *d);
/* Prints every platform and device with its "P:D" spec. */
void cli_device_list(FILE *f);

/* Runs argv[0] (argv NULL-terminated, the environment inherited) in a
 * process of its own and waits at most limit_s seconds, then kills it.  For
 * third-party code that may hang inside an OpenCL call, which cannot be
 * interrupted in-process.  Returns 0 when the program exited with status 0;
 * otherwise -1 with what happened (did not start, ran out of time, killed
 * by a signal, exit status) in why. */
int cli_run_deadline(char *const argv[], long limit_s, char *why, size_t why_size);

#endif
