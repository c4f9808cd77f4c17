#pragma once
// The certificate and key the HTTP server presents, read again on every reload, so a renewed
// certificate (cert-manager, certbot, a Vault PKI agent) is served without a restart: each TLS
// handshake presents the pair loaded last (an OpenSSL certificate callback on CivetWeb's SSL_CTX).
//
// Threads: Use() from the reloading thread, the callback from CivetWeb's workers; the pair is an
// immutable snapshot swapped atomically.

#include <memory>
#include <string>

struct ssl_st;  // OpenSSL's SSL

namespace pgpulse::agent {

class TlsCertificate {
 public:
  struct Pair;  // a certificate, its chain and its private key (OpenSSL objects)

  // Reads cert_file (the certificate, then any chain certificates) and key_file, and checks that
  // the key belongs to the certificate; nullptr with `error` naming the file otherwise.
  static std::shared_ptr<const Pair> Read(const std::string& cert_file, const std::string& key_file,
                                          std::string& error);

  // The pair every later handshake presents.
  void Use(std::shared_ptr<const Pair> pair);
  // Called with CivetWeb's SSL_CTX (its init_ssl callback), before it serves.
  void Attach(void* ssl_ctx);

 private:
  static int OnHandshake(::ssl_st* ssl, void* self);
  std::shared_ptr<const Pair> pair_;  // std::atomic_load / std::atomic_store only
};

}  // namespace pgpulse::agent
