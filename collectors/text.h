#pragma once
// Shortening messages for logs, pages and metrics labels.

#include <string>
#include <string_view>

namespace pgpulse::collectors {

// `text` on one line: line breaks and tabs become spaces, spaces at either end are cut, and
// past `max` characters the rest becomes "...". The one helper for error messages.
std::string OneLine(std::string_view text, size_t max = std::string::npos);

}  // namespace pgpulse::collectors
