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

static struct {
    void *lib;
    PFN_clGetPlatformIDs GetPlatformIDs;
    PFN_clGetPlatformInfo GetPlatformInfo;
    PFN_clGetDeviceIDs GetDeviceIDs;
    PFN_clGetDeviceInfo GetDeviceInfo;
} cl;
static pthread_once_t cl_once = PTHREAD_ONCE_INIT;

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
