#include "agent/gzip.h"

#include <zlib.h>

#include <cctype>
#include <stdexcept>

namespace pgpulse::agent {

std::string Gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(data.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
  out.resize(zs.total_out);
  return out;
}

bool AcceptsGzip(std::string_view header) {
  size_t pos = 0;
  while (pos <= header.size()) {
    size_t comma = header.find(',', pos);
    std::string_view item = header.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? header.size() + 1 : comma + 1;
    std::string token, params;
    size_t semi = item.find(';');
    for (char c : item.substr(0, semi))
      if (!std::isspace(static_cast<unsigned char>(c))) token.push_back(static_cast<char>(std::tolower(c)));
    if (token != "gzip" && token != "*") continue;
    if (semi != std::string_view::npos) {
      for (char c : item.substr(semi + 1))
        if (!std::isspace(static_cast<unsigned char>(c))) params.push_back(static_cast<char>(std::tolower(c)));
      if (params.rfind("q=", 0) == 0) {
        double q = std::strtod(params.c_str() + 2, nullptr);
        if (q <= 0) continue;
      }
    }
    return true;
  }
  return false;
}

}  // namespace pgpulse::agent
