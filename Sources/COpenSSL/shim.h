/* These three first: without them clang reports "fd_set ... is not present in definition"
   when two C modules are imported into one Swift file. */
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* These are macros over SSL_ctrl/SSL_CTX_ctrl, which Swift cannot import: typed wrappers. */
static inline int tp_ssl_set_sni(SSL *s, const char *name) { return (int)SSL_set_tlsext_host_name(s, name); }
static inline int tp_ssl_ctx_set_min_tls12(SSL_CTX *c) { return (int)SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION); }
static inline long tp_ssl_ctx_set_mode(SSL_CTX *c, long mode) { return SSL_CTX_set_mode(c, mode); }
static inline void tp_ssl_ctx_ignore_unexpected_eof(SSL_CTX *c) { SSL_CTX_set_options(c, SSL_OP_IGNORE_UNEXPECTED_EOF); }

/* Server side (clients -> tierproxy), as Redis's tls.c sets up its SSL_CTX. */
static inline void tp_ssl_ctx_server_defaults(SSL_CTX *c) {
    SSL_CTX_set_options(c, SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_DONT_INSERT_EMPTY_FRAGMENTS
                        | SSL_OP_NO_COMPRESSION | SSL_OP_SINGLE_DH_USE);
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
    SSL_CTX_set_options(c, SSL_OP_NO_CLIENT_RENEGOTIATION);
#endif
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_dh_auto(c, 1);
}
/* Exactly the listed versions, as tls-protocols: the others are switched off one by one. */
static inline void tp_ssl_ctx_set_protocols(SSL_CTX *c, int tls1, int tls11, int tls12, int tls13) {
    SSL_CTX_set_min_proto_version(c, 0);
    SSL_CTX_set_max_proto_version(c, 0);
    if (!tls1) SSL_CTX_set_options(c, SSL_OP_NO_TLSv1);
    if (!tls11) SSL_CTX_set_options(c, SSL_OP_NO_TLSv1_1);
    if (!tls12) SSL_CTX_set_options(c, SSL_OP_NO_TLSv1_2);
    if (!tls13) SSL_CTX_set_options(c, SSL_OP_NO_TLSv1_3);
}
static inline void tp_ssl_ctx_prefer_server_ciphers(SSL_CTX *c) { SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE); }
/* Off means no resumption at all: no cache and no tickets, so a client offering a session gets
   a full handshake. (Redis turns only the cache off and sets no session id context then, and with
   client certificates verified OpenSSL answers such a client with an internal-error alert.) */
static inline void tp_ssl_ctx_session_cache(SSL_CTX *c, int on, long size, long seconds) {
    SSL_CTX_set_session_id_context(c, (const unsigned char *)"redis", 5);
    if (!on) {
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(c, 0);
        return;
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(c, size);
    SSL_CTX_set_timeout(c, seconds);
}
/* The key's passphrase, as Redis's tlsPasswordCallback: none given means "no passphrase" (never
   OpenSSL's default of asking on the terminal). */
static inline int tp_ssl_password_cb(char *buf, int size, int rwflag, void *u) {
    (void)rwflag;
    if (!u) return -1;
    size_t n = strlen((const char *)u);
    if (n > (size_t)size) return -1;
    memcpy(buf, u, n);
    return (int)n;
}
static inline void tp_ssl_ctx_set_key_pass(SSL_CTX *c, const char *pass) {
    SSL_CTX_set_default_passwd_cb(c, tp_ssl_password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(c, (void *)pass);
}

/* TLS over two libevent evbuffers: a BIO that OpenSSL reads ciphertext from (`in`, which the
   connection fills with one readv per wakeup) and writes ciphertext to (`out`, which the
   connection writes with one writev), so OpenSSL itself makes no system call and a pipelined
   batch costs one read and one write, as on a plain connection. `eof`: the socket reached end of
   stream, so an empty `in` is the end rather than "come back later". (libevent's functions are
   declared inside the bodies, out of Swift's sight: CLibevent declares them for Swift.) */
#include <pthread.h>
#include <stdlib.h>

struct evbuffer;
typedef struct { struct evbuffer *in; struct evbuffer *out; int eof; } tp_tls_pipe;

static inline int tp_tls_pipe_write(BIO *b, const char *data, int len) {
    extern int evbuffer_add(struct evbuffer *, const void *, size_t);
    tp_tls_pipe *p = (tp_tls_pipe *)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    return evbuffer_add(p->out, data, (size_t)len) == 0 ? len : -1;
}
static inline int tp_tls_pipe_read(BIO *b, char *data, int len) {
    extern int evbuffer_remove(struct evbuffer *, void *, size_t);
    tp_tls_pipe *p = (tp_tls_pipe *)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    int n = evbuffer_remove(p->in, data, (size_t)len);
    if (n > 0) return n;
    if (p->eof) return 0;
    BIO_set_retry_read(b);
    return -1;
}
static inline long tp_tls_pipe_ctrl(BIO *b, int cmd, long num, void *ptr) {
    extern size_t evbuffer_get_length(const struct evbuffer *);
    (void)num; (void)ptr;
    tp_tls_pipe *p = (tp_tls_pipe *)BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;                  /* `out` is written by the connection */
    case BIO_CTRL_PENDING: return (long)evbuffer_get_length(p->in);
    case BIO_CTRL_WPENDING: return (long)evbuffer_get_length(p->out);
    case BIO_CTRL_EOF: return p->eof && evbuffer_get_length(p->in) == 0;
    default: return 0;
    }
}
static inline int tp_tls_pipe_create(BIO *b) { BIO_set_init(b, 1); return 1; }

/* A function's static rather than a file's: Swift's importer emits only what functions hold. */
static inline BIO_METHOD **tp_tls_pipe_method_slot(void) { static BIO_METHOD *m; return &m; }
static inline void tp_tls_pipe_method_make(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tierproxy evbuffer pipe");
    if (!m) return;
    BIO_meth_set_write(m, tp_tls_pipe_write);
    BIO_meth_set_read(m, tp_tls_pipe_read);
    BIO_meth_set_ctrl(m, tp_tls_pipe_ctrl);
    BIO_meth_set_create(m, tp_tls_pipe_create);
    *tp_tls_pipe_method_slot() = m;
}

/* One BIO for both directions of `ssl` (the SSL owns it and frees it with itself); the pipe and
   its buffers stay the caller's. Returns 0 if out of memory. */
static inline int tp_tls_pipe_attach(SSL *ssl, tp_tls_pipe *pipe) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, tp_tls_pipe_method_make);
    if (!*tp_tls_pipe_method_slot()) return 0;
    BIO *b = BIO_new(*tp_tls_pipe_method_slot());
    if (!b) return 0;
    BIO_set_data(b, pipe);
    SSL_set_bio(ssl, b, b);
    return 1;
}
