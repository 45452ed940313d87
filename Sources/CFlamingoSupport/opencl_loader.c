/* Run-time OpenCL loader: dlopen the ICD loader so libflamingo has no hard
 * dependency on libOpenCL.so.1. Only the entry points the engine uses are
 * resolved. */
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "fsup.h"

typedef cl_int (*PFN_clGetPlatformIDs)(cl_uint, cl_platform_id *, cl_uint *);
typedef cl_int (*PFN_clGetPlatformInfo)(cl_platform_id, cl_platform_info, size_t, void *, size_t *);
typedef cl_int (*PFN_clGetDeviceIDs)(cl_platform_id, cl_device_type, cl_uint, cl_device_id *, cl_uint *);
typedef cl_int (*PFN_clGetDeviceInfo)(cl_device_id, cl_device_info, size_t, void *, size_t *);

/* Compute entry points (context, queue, buffers, programs, kernels). They
 * are optional as a group: enumeration keeps working with a loader that
 * lacks one of them, only fsup_cl_compute_available() then reports 0. */
typedef cl_context (*PFN_clCreateContext)(const cl_context_properties *, cl_uint, const cl_device_id *,
                                          void (CL_CALLBACK *)(const char *, const void *, size_t, void *),
                                          void *, cl_int *);
typedef cl_int (*PFN_clReleaseContext)(cl_context);
typedef cl_command_queue (*PFN_clCreateCommandQueue)(cl_context, cl_device_id, cl_bitfield, cl_int *);
typedef cl_command_queue (*PFN_clCreateCommandQueueWithProperties)(cl_context, cl_device_id, const cl_bitfield *, cl_int *);
typedef cl_int (*PFN_clReleaseCommandQueue)(cl_command_queue);
typedef cl_int (*PFN_clFinish)(cl_command_queue);
typedef cl_int (*PFN_clFlush)(cl_command_queue);
typedef cl_mem (*PFN_clCreateBuffer)(cl_context, cl_mem_flags, size_t, void *, cl_int *);
typedef cl_int (*PFN_clReleaseMemObject)(cl_mem);
typedef cl_int (*PFN_clEnqueueWriteBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, const void *,
                                           cl_uint, const cl_event *, cl_event *);
typedef cl_int (*PFN_clEnqueueReadBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *,
                                          cl_uint, const cl_event *, cl_event *);
typedef cl_int (*PFN_clEnqueueCopyBuffer)(cl_command_queue, cl_mem, cl_mem, size_t, size_t, size_t,
                                          cl_uint, const cl_event *, cl_event *);
typedef cl_int (*PFN_clEnqueueFillBuffer)(cl_command_queue, cl_mem, const void *, size_t, size_t, size_t,
                                          cl_uint, const cl_event *, cl_event *);
typedef cl_program (*PFN_clCreateProgramWithSource)(cl_context, cl_uint, const char **, const size_t *, cl_int *);
typedef cl_program (*PFN_clCreateProgramWithBinary)(cl_context, cl_uint, const cl_device_id *, const size_t *,
                                                    const unsigned char **, cl_int *, cl_int *);
typedef cl_int (*PFN_clBuildProgram)(cl_program, cl_uint, const cl_device_id *, const char *,
                                     void (CL_CALLBACK *)(cl_program, void *), void *);
typedef cl_int (*PFN_clGetProgramBuildInfo)(cl_program, cl_device_id, cl_program_build_info, size_t, void *, size_t *);
typedef cl_int (*PFN_clGetProgramInfo)(cl_program, cl_program_info, size_t, void *, size_t *);
typedef cl_int (*PFN_clReleaseProgram)(cl_program);
typedef cl_kernel (*PFN_clCreateKernel)(cl_program, const char *, cl_int *);
typedef cl_int (*PFN_clReleaseKernel)(cl_kernel);
typedef cl_int (*PFN_clSetKernelArg)(cl_kernel, cl_uint, size_t, const void *);
typedef cl_int (*PFN_clGetKernelWorkGroupInfo)(cl_kernel, cl_device_id, cl_kernel_work_group_info, size_t, void *, size_t *);
typedef cl_int (*PFN_clEnqueueNDRangeKernel)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *,
                                             const size_t *, cl_uint, const cl_event *, cl_event *);

static struct {
    void *lib;
    PFN_clGetPlatformIDs GetPlatformIDs;
    PFN_clGetPlatformInfo GetPlatformInfo;
    PFN_clGetDeviceIDs GetDeviceIDs;
    PFN_clGetDeviceInfo GetDeviceInfo;
    int compute;   /* every entry point below resolved */
    PFN_clCreateContext CreateContext;
    PFN_clReleaseContext ReleaseContext;
    PFN_clCreateCommandQueue CreateCommandQueue;                         /* 1.x; either this ... */
    PFN_clCreateCommandQueueWithProperties CreateCommandQueueWithProperties;  /* ... or this (2.0+) */
    PFN_clReleaseCommandQueue ReleaseCommandQueue;
    PFN_clFinish Finish;
    PFN_clFlush Flush;
    PFN_clCreateBuffer CreateBuffer;
    PFN_clReleaseMemObject ReleaseMemObject;
    PFN_clEnqueueWriteBuffer EnqueueWriteBuffer;
    PFN_clEnqueueReadBuffer EnqueueReadBuffer;
    PFN_clEnqueueCopyBuffer EnqueueCopyBuffer;
    PFN_clEnqueueFillBuffer EnqueueFillBuffer;
    PFN_clCreateProgramWithSource CreateProgramWithSource;
    PFN_clCreateProgramWithBinary CreateProgramWithBinary;
    PFN_clBuildProgram BuildProgram;
    PFN_clGetProgramBuildInfo GetProgramBuildInfo;
    PFN_clGetProgramInfo GetProgramInfo;
    PFN_clReleaseProgram ReleaseProgram;
    PFN_clCreateKernel CreateKernel;
    PFN_clReleaseKernel ReleaseKernel;
    PFN_clSetKernelArg SetKernelArg;
    PFN_clGetKernelWorkGroupInfo GetKernelWorkGroupInfo;
    PFN_clEnqueueNDRangeKernel EnqueueNDRangeKernel;
} cl;
static pthread_once_t cl_once = PTHREAD_ONCE_INIT;

#define RESOLVE(name) (cl.name = (PFN_cl##name)dlsym(lib, "cl" #name))

static void cl_load_compute(void *lib) {
    RESOLVE(CreateContext); RESOLVE(ReleaseContext);
    RESOLVE(CreateCommandQueue); RESOLVE(CreateCommandQueueWithProperties);
    RESOLVE(ReleaseCommandQueue); RESOLVE(Finish); RESOLVE(Flush);
    RESOLVE(CreateBuffer); RESOLVE(ReleaseMemObject);
    RESOLVE(EnqueueWriteBuffer); RESOLVE(EnqueueReadBuffer); RESOLVE(EnqueueCopyBuffer); RESOLVE(EnqueueFillBuffer);
    RESOLVE(CreateProgramWithSource); RESOLVE(CreateProgramWithBinary); RESOLVE(BuildProgram);
    RESOLVE(GetProgramBuildInfo); RESOLVE(GetProgramInfo); RESOLVE(ReleaseProgram);
    RESOLVE(CreateKernel); RESOLVE(ReleaseKernel); RESOLVE(SetKernelArg); RESOLVE(GetKernelWorkGroupInfo);
    RESOLVE(EnqueueNDRangeKernel);
    cl.compute = cl.CreateContext && cl.ReleaseContext
        && (cl.CreateCommandQueue || cl.CreateCommandQueueWithProperties)
        && cl.ReleaseCommandQueue && cl.Finish && cl.Flush && cl.CreateBuffer && cl.ReleaseMemObject
        && cl.EnqueueWriteBuffer && cl.EnqueueReadBuffer && cl.EnqueueCopyBuffer && cl.EnqueueFillBuffer
        && cl.CreateProgramWithSource && cl.CreateProgramWithBinary && cl.BuildProgram
        && cl.GetProgramBuildInfo && cl.GetProgramInfo && cl.ReleaseProgram
        && cl.CreateKernel && cl.ReleaseKernel && cl.SetKernelArg && cl.GetKernelWorkGroupInfo
        && cl.EnqueueNDRangeKernel;
}

static void cl_load(void) {
    void *lib = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libOpenCL.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    cl.GetPlatformIDs = (PFN_clGetPlatformIDs)dlsym(lib, "clGetPlatformIDs");
    cl.GetPlatformInfo = (PFN_clGetPlatformInfo)dlsym(lib, "clGetPlatformInfo");
    cl.GetDeviceIDs = (PFN_clGetDeviceIDs)dlsym(lib, "clGetDeviceIDs");
    cl.GetDeviceInfo = (PFN_clGetDeviceInfo)dlsym(lib, "clGetDeviceInfo");
    if (!cl.GetPlatformIDs || !cl.GetPlatformInfo || !cl.GetDeviceIDs || !cl.GetDeviceInfo) {
        dlclose(lib);
        memset(&cl, 0, sizeof cl);
        return;
    }
    cl.lib = lib;
    cl_load_compute(lib);
}

int fsup_cl_available(void) {
    pthread_once(&cl_once, cl_load);
    return cl.lib != NULL;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t n) {
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void platform_str(cl_platform_id p, cl_platform_info what, char *dst, size_t cap) {
    char buf[1024] = {0};
    size_t n = 0;
    if (cl.GetPlatformInfo(p, what, sizeof buf - 1, buf, &n) != CL_SUCCESS) n = 0;
    copy_str(dst, cap, buf, strnlen(buf, sizeof buf));
}

static void device_str(cl_device_id d, cl_device_info what, char *dst, size_t cap) {
    char buf[1024] = {0};
    size_t n = 0;
    if (cl.GetDeviceInfo(d, what, sizeof buf - 1, buf, &n) != CL_SUCCESS) n = 0;
    copy_str(dst, cap, buf, strnlen(buf, sizeof buf));
}

int fsup_cl_enumerate(fsup_cl_device_desc *out, int capacity, char *err, size_t err_cap) {
    if (!fsup_cl_available()) return 0;
    cl_uint np = 0;
    cl_int rc = cl.GetPlatformIDs(0, NULL, &np);
    /* The ICD loader reports "no platforms" as an error code: not a failure for us. */
    if (rc == CL_PLATFORM_NOT_FOUND_KHR || np == 0) return 0;
    if (rc != CL_SUCCESS) {
        snprintf(err, err_cap, "clGetPlatformIDs failed with OpenCL error %d", rc);
        return rc < 0 ? rc : -1;
    }
    if (np > 64) np = 64;
    cl_platform_id platforms[64];
    rc = cl.GetPlatformIDs(np, platforms, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(err, err_cap, "clGetPlatformIDs failed with OpenCL error %d", rc);
        return rc < 0 ? rc : -1;
    }
    int total = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        rc = cl.GetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
        if (rc == CL_DEVICE_NOT_FOUND || nd == 0) continue;
        if (rc != CL_SUCCESS) {
            snprintf(err, err_cap, "clGetDeviceIDs on platform %u failed with OpenCL error %d", p, rc);
            return rc < 0 ? rc : -1;
        }
        if (nd > 64) nd = 64;
        cl_device_id devices[64];
        rc = cl.GetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, nd, devices, NULL);
        if (rc != CL_SUCCESS) {
            snprintf(err, err_cap, "clGetDeviceIDs on platform %u failed with OpenCL error %d", p, rc);
            return rc < 0 ? rc : -1;
        }
        for (cl_uint d = 0; d < nd; d++, total++) {
            if (total >= capacity) continue;
            fsup_cl_device_desc *o = &out[total];
            memset(o, 0, sizeof *o);
            device_str(devices[d], CL_DEVICE_NAME, o->name, sizeof o->name);
            device_str(devices[d], CL_DEVICE_VENDOR, o->vendor, sizeof o->vendor);
            device_str(devices[d], CL_DRIVER_VERSION, o->driver_version, sizeof o->driver_version);
            platform_str(platforms[p], CL_PLATFORM_NAME, o->platform_name, sizeof o->platform_name);
            platform_str(platforms[p], CL_PLATFORM_VENDOR, o->platform_vendor, sizeof o->platform_vendor);
            cl_ulong mem = 0;
            cl_uint cu = 0;
            cl_device_type type = 0;
            if (cl.GetDeviceInfo(devices[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL) != CL_SUCCESS) mem = 0;
            if (cl.GetDeviceInfo(devices[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL) != CL_SUCCESS) cu = 0;
            if (cl.GetDeviceInfo(devices[d], CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS) type = 0;
            o->global_mem_bytes = mem;
            o->compute_units = cu;
            o->device_type = (type & CL_DEVICE_TYPE_GPU) ? 1 : (type & CL_DEVICE_TYPE_CPU) ? 0
                           : (type & CL_DEVICE_TYPE_ACCELERATOR) ? 2 : 3;
            o->platform_index = (int32_t)p;
            o->device_index = (int32_t)d;
        }
    }
    return total;
}

/* ---- compute wrappers ----
 * Each one is a direct call through the table; the caller checked
 * fsup_cl_compute_available() once before creating a context, so the
 * pointers are non-NULL here (a NULL handle from Swift is the caller's bug
 * and is reported as CL_INVALID_VALUE rather than dereferenced). */

int fsup_cl_compute_available(void) {
    pthread_once(&cl_once, cl_load);
    return cl.lib != NULL && cl.compute;
}

#define NEED(cond) do { if (!fsup_cl_compute_available() || !(cond)) return CL_INVALID_VALUE; } while (0)
#define NEED_H(cond, err) do { if (!fsup_cl_compute_available() || !(cond)) { if (err) *(err) = CL_INVALID_VALUE; return NULL; } } while (0)

void *fsup_cl_device_handle(int32_t platform_index, int32_t device_index, int32_t *err) {
    NEED_H(platform_index >= 0 && device_index >= 0, err);
    cl_uint np = 0;
    cl_int rc = cl.GetPlatformIDs(0, NULL, &np);
    if (rc == CL_SUCCESS && (cl_uint)platform_index >= np) rc = CL_INVALID_PLATFORM;
    if (rc != CL_SUCCESS) { if (err) *err = rc; return NULL; }
    if (np > 64) np = 64;
    cl_platform_id platforms[64];
    rc = cl.GetPlatformIDs(np, platforms, NULL);
    if (rc != CL_SUCCESS || (cl_uint)platform_index >= np) { if (err) *err = rc ? rc : CL_INVALID_PLATFORM; return NULL; }
    cl_uint nd = 0;
    rc = cl.GetDeviceIDs(platforms[platform_index], CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
    if (rc == CL_SUCCESS && (cl_uint)device_index >= nd) rc = CL_DEVICE_NOT_FOUND;
    if (rc != CL_SUCCESS) { if (err) *err = rc; return NULL; }
    if (nd > 64) nd = 64;
    cl_device_id devices[64];
    rc = cl.GetDeviceIDs(platforms[platform_index], CL_DEVICE_TYPE_ALL, nd, devices, NULL);
    if (rc != CL_SUCCESS || (cl_uint)device_index >= nd) { if (err) *err = rc ? rc : CL_DEVICE_NOT_FOUND; return NULL; }
    if (err) *err = CL_SUCCESS;
    return devices[device_index];
}

int32_t fsup_cl_device_info(void *device, uint32_t param, size_t size, void *value, size_t *size_ret) {
    NEED(device);
    return cl.GetDeviceInfo((cl_device_id)device, param, size, value, size_ret);
}

void *fsup_cl_context_create(void *device, int32_t *err) {
    NEED_H(device, err);
    cl_device_id d = (cl_device_id)device;
    cl_int rc = CL_SUCCESS;
    cl_context c = cl.CreateContext(NULL, 1, &d, NULL, NULL, &rc);
    if (err) *err = rc;
    return c;
}

int32_t fsup_cl_context_release(void *context) { NEED(context); return cl.ReleaseContext((cl_context)context); }

void *fsup_cl_queue_create(void *context, void *device, int32_t *err) {
    NEED_H(context && device, err);
    cl_int rc = CL_SUCCESS;
    cl_command_queue q = NULL;
    /* In-order, no profiling. clCreateCommandQueue is deprecated in 2.0 but
     * is what 1.2 platforms have; prefer the 2.0 call where it exists. */
    if (cl.CreateCommandQueueWithProperties) {
        q = cl.CreateCommandQueueWithProperties((cl_context)context, (cl_device_id)device, NULL, &rc);
        if (q || !cl.CreateCommandQueue) { if (err) *err = rc; return q; }
    }
    q = cl.CreateCommandQueue((cl_context)context, (cl_device_id)device, 0, &rc);
    if (err) *err = rc;
    return q;
}

int32_t fsup_cl_queue_release(void *queue) { NEED(queue); return cl.ReleaseCommandQueue((cl_command_queue)queue); }
int32_t fsup_cl_finish(void *queue) { NEED(queue); return cl.Finish((cl_command_queue)queue); }
int32_t fsup_cl_flush(void *queue) { NEED(queue); return cl.Flush((cl_command_queue)queue); }

void *fsup_cl_buffer_create(void *context, uint64_t flags, size_t bytes, void *host, int32_t *err) {
    NEED_H(context, err);
    cl_int rc = CL_SUCCESS;
    cl_mem m = cl.CreateBuffer((cl_context)context, (cl_mem_flags)flags, bytes, host, &rc);
    if (err) *err = rc;
    return m;
}

int32_t fsup_cl_buffer_release(void *mem) { NEED(mem); return cl.ReleaseMemObject((cl_mem)mem); }

int32_t fsup_cl_write(void *queue, void *mem, int blocking, size_t offset, size_t bytes, const void *src) {
    NEED(queue && mem);
    return cl.EnqueueWriteBuffer((cl_command_queue)queue, (cl_mem)mem, blocking ? CL_TRUE : CL_FALSE,
                                 offset, bytes, src, 0, NULL, NULL);
}

int32_t fsup_cl_read(void *queue, void *mem, int blocking, size_t offset, size_t bytes, void *dst) {
    NEED(queue && mem);
    return cl.EnqueueReadBuffer((cl_command_queue)queue, (cl_mem)mem, blocking ? CL_TRUE : CL_FALSE,
                                offset, bytes, dst, 0, NULL, NULL);
}

int32_t fsup_cl_copy(void *queue, void *src, void *dst, size_t src_offset, size_t dst_offset, size_t bytes) {
    NEED(queue && src && dst);
    return cl.EnqueueCopyBuffer((cl_command_queue)queue, (cl_mem)src, (cl_mem)dst, src_offset, dst_offset, bytes,
                                0, NULL, NULL);
}

int32_t fsup_cl_fill(void *queue, void *mem, const void *pattern, size_t pattern_size, size_t offset, size_t bytes) {
    NEED(queue && mem && pattern);
    return cl.EnqueueFillBuffer((cl_command_queue)queue, (cl_mem)mem, pattern, pattern_size, offset, bytes,
                                0, NULL, NULL);
}

void *fsup_cl_program_from_source(void *context, const char *source, size_t length, int32_t *err) {
    NEED_H(context && source, err);
    cl_int rc = CL_SUCCESS;
    cl_program p = cl.CreateProgramWithSource((cl_context)context, 1, &source, &length, &rc);
    if (err) *err = rc;
    return p;
}

void *fsup_cl_program_from_binary(void *context, void *device, const unsigned char *binary, size_t length,
                                  int32_t *err) {
    NEED_H(context && device && binary && length > 0, err);
    cl_device_id d = (cl_device_id)device;
    cl_int rc = CL_SUCCESS, status = CL_SUCCESS;
    cl_program p = cl.CreateProgramWithBinary((cl_context)context, 1, &d, &length, &binary, &status, &rc);
    if (rc == CL_SUCCESS && status != CL_SUCCESS) rc = status;
    if (rc != CL_SUCCESS && p) { cl.ReleaseProgram(p); p = NULL; }
    if (err) *err = rc;
    return p;
}

int32_t fsup_cl_program_build(void *program, void *device, const char *options) {
    NEED(program && device);
    cl_device_id d = (cl_device_id)device;
    return cl.BuildProgram((cl_program)program, 1, &d, options, NULL, NULL);
}

int32_t fsup_cl_program_build_log(void *program, void *device, char *buf, size_t cap, size_t *len) {
    NEED(program && device);
    return cl.GetProgramBuildInfo((cl_program)program, (cl_device_id)device, CL_PROGRAM_BUILD_LOG, cap, buf, len);
}

int32_t fsup_cl_program_binary(void *program, unsigned char *buf, size_t cap, size_t *len) {
    NEED(program);
    cl_uint ndev = 0;
    cl_int rc = cl.GetProgramInfo((cl_program)program, CL_PROGRAM_NUM_DEVICES, sizeof ndev, &ndev, NULL);
    if (rc != CL_SUCCESS) return rc;
    if (ndev != 1) return CL_INVALID_PROGRAM;   /* we build for exactly one device */
    size_t size = 0;
    rc = cl.GetProgramInfo((cl_program)program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL);
    if (rc != CL_SUCCESS) return rc;
    if (len) *len = size;
    if (!buf) return CL_SUCCESS;                /* size query only */
    if (cap < size) return CL_INVALID_VALUE;
    unsigned char *ptrs[1] = { buf };
    return cl.GetProgramInfo((cl_program)program, CL_PROGRAM_BINARIES, sizeof ptrs, ptrs, NULL);
}

int32_t fsup_cl_program_release(void *program) { NEED(program); return cl.ReleaseProgram((cl_program)program); }

void *fsup_cl_kernel_create(void *program, const char *name, int32_t *err) {
    NEED_H(program && name, err);
    cl_int rc = CL_SUCCESS;
    cl_kernel k = cl.CreateKernel((cl_program)program, name, &rc);
    if (err) *err = rc;
    return k;
}

int32_t fsup_cl_kernel_release(void *kernel) { NEED(kernel); return cl.ReleaseKernel((cl_kernel)kernel); }

int32_t fsup_cl_kernel_arg(void *kernel, uint32_t index, size_t size, const void *value) {
    NEED(kernel);
    return cl.SetKernelArg((cl_kernel)kernel, index, size, value);
}

int32_t fsup_cl_kernel_arg_mem(void *kernel, uint32_t index, void *mem) {
    NEED(kernel);
    cl_mem m = (cl_mem)mem;
    return cl.SetKernelArg((cl_kernel)kernel, index, sizeof m, &m);
}

int32_t fsup_cl_kernel_work_group_size(void *kernel, void *device, size_t *size) {
    NEED(kernel && device && size);
    return cl.GetKernelWorkGroupInfo((cl_kernel)kernel, (cl_device_id)device, CL_KERNEL_WORK_GROUP_SIZE,
                                     sizeof *size, size, NULL);
}

int32_t fsup_cl_enqueue(void *queue, void *kernel, uint32_t dims, const size_t *global, const size_t *local) {
    NEED(queue && kernel && dims >= 1 && dims <= 3 && global);
    return cl.EnqueueNDRangeKernel((cl_command_queue)queue, (cl_kernel)kernel, dims, NULL, global, local,
                                   0, NULL, NULL);
}
