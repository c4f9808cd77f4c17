#pragma once
// Prometheus text format 0.0.4 writer for Family values and prometheus-cpp MetricFamily.

#include <prometheus/metric_family.h>

#include <functional>
#include <string>
#include <vector>

#include "collectors/family.h"

namespace pgpulse::collectors {

// Appends `value` as the text format wants it: "Nan", "+Inf", "-Inf", or a
// decimal that parses back to exactly `value`: printf("%.16g") (what
// prometheus-cpp's TextSerializer prints) when that is exact, otherwise the
// 17 significant digits laid out like printf("%.17g").
void AppendValue(std::string& out, double value);

// Writes families in order. Families sharing a name are written as one
// family (HELP and TYPE from the first one seen, samples in order), because
// the text format forbids a family appearing twice; the same collector run
// in several databases produces exactly that.
void WriteExposition(std::string& out, const std::vector<const Family*>& families);

// Receives the text as it is written; may take it (it is cleared afterwards).
using ExpositionSink = std::function<void(std::string& text)>;
// The same, streamed: `sink` gets the text in pieces of about `flush_bytes` (a large family is
// split between pieces at sample boundaries), so the whole text is never in memory at once, nor
// one whole large family.
void WriteExposition(const std::vector<const Family*>& families, size_t flush_bytes, const ExpositionSink& sink);

// Converts prometheus-cpp families (the agent's own Registry) to ours, so
// that one writer serves both. Counter, gauge, untyped and histogram are
// supported; a summary is converted like prometheus-cpp writes it.
// Timestamps (ClientMetric::timestamp_ms) are ignored: we never set them.
// Histogram and summary counts become doubles, exact up to 2^53.
std::vector<Family> FromPrometheus(const std::vector<prometheus::MetricFamily>& families);

}  // namespace pgpulse::collectors
