/* These three first: without them clang reports "fd_set ... is not present in definition"
   when two C modules are imported into one Swift file. */
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/http.h>
#include <event2/util.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

/* prctl is variadic; names the calling thread so `top -H` shows loops apart. */
static inline void tp_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

/* Swift has no atomics without a package; these builtins are all a cross-loop counter needs. */
static inline long tp_atomic_add(long *p, long delta) { return __atomic_add_fetch(p, delta, __ATOMIC_ACQ_REL); }
static inline long tp_atomic_load(long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/* Single-writer cells (per-loop metrics): the owner loop stores, any thread loads. Relaxed
   load + store compile to plain moves; no read-modify-write, no fence, no lock. */
static inline long tp_relaxed_load(const long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void tp_relaxed_store(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
