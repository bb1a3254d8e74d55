/* These three first: without them clang reports "fd_set ... is not present in definition"
   when two C modules are imported into one Swift file. */
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
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
