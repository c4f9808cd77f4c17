// libFuzzer: the exposition writer's escaping. Arbitrary label values, help
// text and values go in; what comes out must be well-formed text format whose
// label values unescape back to the input exactly (with bytes that are not valid
// UTF-8 replaced by U+FFFD, as AppendLabel does).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "collectors/exposition.h"
#include "collectors/family.h"

namespace {

[[noreturn]] void Fail() { std::abort(); }

// Reads `"..."` starting at text[i] == '"', undoing the three escapes.
std::string Unquote(const std::string& text, size_t& i) {
  if (text[i] != '"') Fail();
  std::string out;
  for (++i; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      ++i;
      return out;
    }
    if (c == '\n') Fail();  // raw newline inside a value
    if (c == '\\') {
      if (++i >= text.size()) Fail();
      char e = text[i];
      if (e == 'n') out.push_back('\n');
      else if (e == '\\' || e == '"') out.push_back(e);
      else Fail();
    } else {
      out.push_back(c);
    }
  }
  Fail();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(double)) return 0;
  double value;
  std::memcpy(&value, data, sizeof value);
  std::string rest(reinterpret_cast<const char*>(data) + sizeof value, size - sizeof value);
  // Split the rest into help text and up to three label values on '\0'.
  std::vector<std::string> parts{""};
  for (char c : rest) {
    if (c == '\0' && parts.size() < 4) parts.emplace_back();
    else parts.back().push_back(c);
  }
  while (parts.size() < 4) parts.emplace_back();
  std::vector<std::pair<std::string, std::string>> labels{{"a", parts[1]}, {"b", parts[2]}, {"c", parts[3]}};

  pgpulse::collectors::Family f;
  f.name = "fuzz_metric";
  f.help = parts[0];
  f.Add(pgpulse::collectors::RenderLabels(labels), value);
  std::string out;
  pgpulse::collectors::WriteExposition(out, {&f});

  // HELP is one line (its newlines escaped), then TYPE.
  size_t type_at = 0;
  if (!parts[0].empty()) {
    if (out.rfind("# HELP fuzz_metric ", 0) != 0) Fail();
    type_at = out.find('\n') + 1;
  }
  if (out.compare(type_at, 24, "# TYPE fuzz_metric gauge") != 0) Fail();
  size_t sample = out.find("\nfuzz_metric{", type_at);
  if (sample == std::string::npos) Fail();
  size_t i = sample + std::strlen("\nfuzz_metric{");
  for (size_t k = 0; k < labels.size(); ++k) {
    const std::string& name = labels[k].first;
    if (out.compare(i, name.size() + 1, name + "=") != 0) Fail();
    i += name.size() + 1;
    size_t replaced = 0;
    if (Unquote(out, i) != pgpulse::collectors::ToValidUtf8(labels[k].second, replaced)) Fail();
    if (out[i] == ',') ++i;
  }
  if (out[i] != '}' || out[i + 1] != ' ') Fail();
  std::string number = out.substr(i + 2, out.find('\n', i) - i - 2);
  if (std::isnan(value)) {
    if (number != "Nan") Fail();
  } else if (std::isinf(value)) {
    if (number != (value > 0 ? "+Inf" : "-Inf")) Fail();
  } else {
    double back = std::strtod(number.c_str(), nullptr);
    if (std::memcmp(&back, &value, sizeof back) != 0 && !(back == 0 && value == 0)) Fail();
  }
  if (out.back() != '\n') Fail();
  return 0;
}
