/* Kernel micro-benchmark (not a test): three activation rows through the affine
 * matrix-vector kernel as three 1-row passes and as one 3-row pass (beams, small
 * batches), one thread, a 64 MB (q4) / 128 MB (q8) weight that does not fit any cache.
 * Build with clang, the compiler SwiftPM compiles the library's kernels with (a gcc 12 build of the
 * same file showed no gain from the shared pass):
 *   clang -O2 -march=x86-64-v3 -Ikernels/cpu/include tools/bench/gemv_rows.c kernels/cpu/quant.c -lm -o /tmp/gemv_rows
 *   /tmp/gemv_rows 4 32768 4096 8; /tmp/gemv_rows 8 32768 4096 8      (bits rows cols repetitions; best of) */
#include "flamingo_quant_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int bits=atoi(argv[1]); long rows=atol(argv[2]), cols=atol(argv[3]), g=64; int reps=atoi(argv[4]), M=3;
  size_t wbytes=rows*cols*bits/8; uint8_t*w=aligned_alloc(64,wbytes); for(size_t i=0;i<wbytes;i++) w[i]=rand();
  uint16_t*s=aligned_alloc(64,rows*cols/g*2+64),*b=aligned_alloc(64,rows*cols/g*2+64);
  for(long i=0;i<rows*cols/g;i++){s[i]=0x2000;b[i]=0xa000;}
  float*x=aligned_alloc(64,M*cols*4),*y=aligned_alloc(64,M*rows*4); for(long i=0;i<M*cols;i++)x[i]=rand()/(float)RAND_MAX-0.5f;
  fk_qx a[3]; for(int i=0;i<M;i++){a[i]=(fk_qx){aligned_alloc(64,cols),aligned_alloc(64,cols/g*4+64),aligned_alloc(64,cols/g*4+64),cols,g,bits==4?FK_W_Q4:FK_W_Q8}; fk_quantize_x(x+i*cols,&a[i]);}
  fk_weight wt={w,s,b,bits==4?FK_W_Q4:FK_W_Q8,FK_SB_F16,rows,cols,g};
  double b1=1e9,b3=1e9;
  for(int r=0;r<reps;r++){double t0=now(); for(int i=0;i<M;i++) fk_gemv_rows(&wt,x+i*cols,cols,&a[i],1,y+i*rows,rows,0,rows); double dt=now()-t0; if(dt<b1)b1=dt;
    t0=now(); fk_gemv_rows(&wt,x,cols,a,M,y,rows,0,rows); dt=now()-t0; if(dt<b3)b3=dt;}
  printf("q%d %ldx%ld, 3 activation rows: three 1-row passes %.2f ms, one 3-row pass %.2f ms (%.2fx)\n",bits,rows,cols,b1*1e3,b3*1e3,b1/b3);
}
