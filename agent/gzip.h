#pragma once
// gzip for HTTP responses.

#include <string>
#include <string_view>

namespace pgpulse::agent {

// Compresses `data` as a gzip member (fast level: scrapes favour CPU over bytes).
std::string Gzip(std::string_view data);

// True when an Accept-Encoding header value admits gzip (and not with q=0).
bool AcceptsGzip(std::string_view accept_encoding);

}  // namespace pgpulse::agent
