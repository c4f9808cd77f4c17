/* Stand-ins that let Debian 12's CivetWeb use OpenSSL 3 for TLS.
 *
 * libcivetweb 1.15 in Debian loads OpenSSL at run time with dlopen("libssl.so")
 * and looks up each function by name. OpenSSL 3 no longer exports
 * SSL_get_peer_certificate (it became a macro for SSL_get1_peer_certificate), so
 * CivetWeb's table gets a null pointer and every TLS connection crashes its
 * worker. These libraries carry the sonames "libssl.so" and "libcrypto.so":
 * loaded before CivetWeb asks, dlopen hands them out for those names, and
 * lookups through them fall through to the real OpenSSL they depend on. */

#include <openssl/ssl.h>

#ifdef PGPULSE_SSL_SHIM
#undef SSL_get_peer_certificate
X509 *SSL_get_peer_certificate(const SSL *ssl);
X509 *SSL_get_peer_certificate(const SSL *ssl) { return SSL_get1_peer_certificate(ssl); }
#endif

/* Gives the library one symbol of its own. */
int pgpulse_openssl_compat_version(void);
int pgpulse_openssl_compat_version(void) { return 1; }
