// A plain HTTP client for tests (libcurl), plus the loopback and gzip helpers tests need around it.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace pgpulse::testing {

struct HttpResponse {
  long status = 0;
  // Names lower-cased; a repeated header's values are joined with ", ".
  std::map<std::string, std::string> headers;
  // Exactly as sent: a gzip body stays compressed (see Gunzip).
  std::string body;
};

// headers are "Name: value" lines. Throws std::runtime_error on transport errors (refused, timeout, ...);
// any HTTP status, 4xx and 5xx included, is a normal response. Proxy settings from the environment are ignored.
HttpResponse HttpRequest(const std::string& method, const std::string& url,
                         const std::vector<std::string>& headers = {}, const std::string& body = "",
                         double timeout_seconds = 30);

HttpResponse HttpGet(const std::string& url, const std::vector<std::string>& headers = {}, double timeout_seconds = 30);

// Decompresses one gzip stream; throws std::runtime_error if it is not valid, complete gzip.
std::string Gunzip(const std::string& compressed);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
int FreeLoopbackPort();

}  // namespace pgpulse::testing
