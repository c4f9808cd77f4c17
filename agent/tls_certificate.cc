#include "agent/tls_certificate.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdio>
#include <vector>

namespace pgpulse::agent {

struct TlsCertificate::Pair {
  X509* cert = nullptr;
  std::vector<X509*> chain;
  EVP_PKEY* key = nullptr;
  Pair() = default;
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  ~Pair() {
    X509_free(cert);
    for (X509* c : chain) X509_free(c);
    EVP_PKEY_free(key);
  }
};

namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

std::shared_ptr<const TlsCertificate::Pair> TlsCertificate::Read(const std::string& cert_file,
                                                                 const std::string& key_file, std::string& error) {
  auto pair = std::make_shared<Pair>();
  ERR_clear_error();
  FILE* f = std::fopen(cert_file.c_str(), "r");
  if (!f) {
    error = "tls_server_config.cert_file: cannot read '" + cert_file + "'";
    return nullptr;
  }
  pair->cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  while (pair->cert) {
    X509* more = PEM_read_X509(f, nullptr, nullptr, nullptr);
    if (!more) break;
    pair->chain.push_back(more);
  }
  std::fclose(f);
  ERR_clear_error();  // the end of the file ends the chain
  if (!pair->cert) {
    error = "tls_server_config.cert_file '" + cert_file + "' holds no PEM certificate";
    return nullptr;
  }
  f = std::fopen(key_file.c_str(), "r");
  if (!f) {
    error = "tls_server_config.key_file: cannot read '" + key_file + "'";
    return nullptr;
  }
  pair->key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!pair->key) {
    error = "tls_server_config.key_file '" + key_file + "' holds no PEM private key: " + OpenSslError();
    return nullptr;
  }
  if (X509_check_private_key(pair->cert, pair->key) != 1) {
    ERR_clear_error();
    error = "tls_server_config: key_file '" + key_file + "' is not the key of cert_file '" + cert_file + "'";
    return nullptr;
  }
  return pair;
}

void TlsCertificate::Use(std::shared_ptr<const Pair> pair) { std::atomic_store(&pair_, std::move(pair)); }

void TlsCertificate::Attach(void* ssl_ctx) {
  SSL_CTX_set_cert_cb(static_cast<SSL_CTX*>(ssl_ctx), &TlsCertificate::OnHandshake, this);
}

int TlsCertificate::OnHandshake(SSL* ssl, void* self) {
  std::shared_ptr<const Pair> pair = std::atomic_load(&static_cast<TlsCertificate*>(self)->pair_);
  if (!pair) return 1;  // CivetWeb's own (the file as read at start)
  if (SSL_use_certificate(ssl, pair->cert) != 1 || SSL_use_PrivateKey(ssl, pair->key) != 1) return 0;
  SSL_clear_chain_certs(ssl);
  for (X509* c : pair->chain) {
    if (SSL_add1_chain_cert(ssl, c) != 1) return 0;
  }
  return 1;
}

}  // namespace pgpulse::agent
