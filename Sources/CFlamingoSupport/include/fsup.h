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

/* ---- OpenCL compute entry points (the OpenCL backend, Sources/FlamingoCore/OpenCL) ----
 * Thin wrappers over the dlopen'ed table: handles are the OpenCL objects
 * (cl_device_id, cl_context, cl_command_queue, cl_mem, cl_program,
 * cl_kernel) as void *, results are OpenCL error codes (0 = CL_SUCCESS).
 * Every wrapper returns CL_INVALID_VALUE (-30) or a NULL handle with *err
 * set to it when the loader is unavailable or a handle is NULL. */

/* 1 when the ICD loader has every compute entry point used below. */
int fsup_cl_compute_available(void);

/* The device `device_index` of platform `platform_index` (the indices of
 * fsup_cl_device_desc); device ids need no release. */
void *fsup_cl_device_handle(int32_t platform_index, int32_t device_index, int32_t *err);
/* clGetDeviceInfo. */
int32_t fsup_cl_device_info(void *device, uint32_t param, size_t size, void *value, size_t *size_ret);

void *fsup_cl_context_create(void *device, int32_t *err);
int32_t fsup_cl_context_release(void *context);
/* An in-order queue without profiling. */
void *fsup_cl_queue_create(void *context, void *device, int32_t *err);
int32_t fsup_cl_queue_release(void *queue);
int32_t fsup_cl_finish(void *queue);
int32_t fsup_cl_flush(void *queue);

/* clCreateBuffer (flags: CL_MEM_* bits, e.g. 1 read-write, 32 copy-host-ptr). */
void *fsup_cl_buffer_create(void *context, uint64_t flags, size_t bytes, void *host, int32_t *err);
int32_t fsup_cl_buffer_release(void *mem);
int32_t fsup_cl_write(void *queue, void *mem, int blocking, size_t offset, size_t bytes, const void *src);
int32_t fsup_cl_read(void *queue, void *mem, int blocking, size_t offset, size_t bytes, void *dst);
int32_t fsup_cl_copy(void *queue, void *src, void *dst, size_t src_offset, size_t dst_offset, size_t bytes);
int32_t fsup_cl_fill(void *queue, void *mem, const void *pattern, size_t pattern_size, size_t offset, size_t bytes);

/* Programs for one device. A binary that the driver rejects gives a
 * non-zero *err and NULL (the caller falls back to the source). */
void *fsup_cl_program_from_source(void *context, const char *source, size_t length, int32_t *err);
void *fsup_cl_program_from_binary(void *context, void *device, const unsigned char *binary, size_t length,
                                  int32_t *err);
int32_t fsup_cl_program_build(void *program, void *device, const char *options);
/* CL_PROGRAM_BUILD_LOG into buf (cap bytes); *len receives the full size. */
int32_t fsup_cl_program_build_log(void *program, void *device, char *buf, size_t cap, size_t *len);
/* The built program's binary for its single device: with buf NULL only
 * *len is set; otherwise cap must be >= *len. */
int32_t fsup_cl_program_binary(void *program, unsigned char *buf, size_t cap, size_t *len);
int32_t fsup_cl_program_release(void *program);

void *fsup_cl_kernel_create(void *program, const char *name, int32_t *err);
int32_t fsup_cl_kernel_release(void *kernel);
/* clSetKernelArg; value NULL with a size reserves __local memory. */
int32_t fsup_cl_kernel_arg(void *kernel, uint32_t index, size_t size, const void *value);
/* A cl_mem argument (mem may be NULL for an absent optional buffer). */
int32_t fsup_cl_kernel_arg_mem(void *kernel, uint32_t index, void *mem);
/* CL_KERNEL_WORK_GROUP_SIZE of the kernel on the device. */
int32_t fsup_cl_kernel_work_group_size(void *kernel, void *device, size_t *size);
/* clEnqueueNDRangeKernel without events; local may be NULL. */
int32_t fsup_cl_enqueue(void *queue, void *kernel, uint32_t dims, const size_t *global, const size_t *local);

#endif
