#include "fsup.h"
#include <stdlib.h>
#include <string.h>

/* One heap string per thread behind a pthread key, so the message is freed
 * when the thread exits. */
#include <pthread.h>

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void destroy(void *p) { free(p); }
static void make_key(void) { (void)pthread_key_create(&key, destroy); }

void fsup_set_last_error(const char *message) {
    pthread_once(&once, make_key);
    char *old = pthread_getspecific(key);
    size_t n = message ? strlen(message) : 0;
    char *buf = malloc(n + 1);
    if (!buf) return; /* keep the previous message rather than crash */
    if (n) memcpy(buf, message, n);
    buf[n] = 0;
    pthread_setspecific(key, buf);
    free(old);
}

const char *fsup_last_error(void) {
    pthread_once(&once, make_key);
    const char *s = pthread_getspecific(key);
    return s ? s : "";
}
