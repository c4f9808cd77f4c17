#include "collectors/text.h"

namespace pgpulse::collectors {

std::string OneLine(std::string_view text, size_t max) {
  std::string s(text);
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  const size_t first = s.find_first_not_of(' ');
  if (first == std::string::npos) return "";
  s = s.substr(first, s.find_last_not_of(' ') - first + 1);
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

}  // namespace pgpulse::collectors
