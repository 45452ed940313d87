/* Internal C helpers for libflamingo. Nothing here is exported from the
 * shared library: the version script keeps only flamingo_* symbols. */
#ifndef FSUP_H
#define FSUP_H
#include <stddef.h>
#include <stdint.h>

/* Per-thread "last error" message. The string is owned by the calling
 * thread and stays valid until that thread's next fsup_set_last_error. */
void fsup_set_last_error(const char *message);
const char *fsup_last_error(void);

/* ---- OpenCL, loaded at run time with dlopen("libOpenCL.so.1") ----
 * The engine must load on machines without an OpenCL ICD loader, so it
 * never links libOpenCL directly. Types are spelled with plain C types
 * so that this header does not need CL/cl.h. */
typedef struct fsup_cl_device_desc {
    char name[256];
    char vendor[128];
    char driver_version[128];
    char platform_name[256];
    char platform_vendor[128];
    uint64_t global_mem_bytes;
    uint32_t compute_units;
    uint32_t device_type;       /* 0 cpu, 1 gpu, 2 accelerator, 3 other */
    int32_t platform_index;
    int32_t device_index;       /* index within its platform */
} fsup_cl_device_desc;

/* Returns 1 when an OpenCL ICD loader could be opened, 0 otherwise. */
int fsup_cl_available(void);

/* Enumerates every device of every platform into out (up to capacity
 * entries). Returns the total number of devices found (which may exceed
 * capacity), or a negative OpenCL error code; on error, err receives a
 * message (NUL-terminated, truncated to err_cap). */
int fsup_cl_enumerate(fsup_cl_device_desc *out, int capacity, char *err, size_t err_cap);

#endif
