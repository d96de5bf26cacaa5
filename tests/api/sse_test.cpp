#include "api/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace api {
namespace {

std::vector<SseEvent> parseAll(std::string_view stream, size_t max = size_t{8} << 20) {
  SseParser parser(max);
  std::vector<SseEvent> out;
  EXPECT_TRUE(parser.feed(stream, out));
  return out;
}

// Feeds `stream` as the given slices, returning every event.
std::vector<SseEvent> parseSlices(const std::vector<std::string_view>& slices) {
  SseParser parser;
  std::vector<SseEvent> out;
  for (std::string_view s : slices) EXPECT_TRUE(parser.feed(s, out));
  return out;
}

void expectSame(const std::vector<SseEvent>& a, const std::vector<SseEvent>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].event, b[i].event) << i;
    EXPECT_EQ(a[i].data, b[i].data) << i;
    EXPECT_EQ(a[i].id, b[i].id) << i;
  }
}

TEST(SseData, FramesOnePayload) {
  EXPECT_EQ(sseData(R"({"a":1})"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sseData(""), "data: \n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
}

TEST(SseData, SplitsLinesIntoDataFields) {
  EXPECT_EQ(sseData("a\nb"), "data: a\ndata: b\n\n");
  EXPECT_EQ(sseData("a\r\nb\rc"), "data: a\ndata: b\ndata: c\n\n");
  EXPECT_EQ(sseData("a\n"), "data: a\ndata: \n\n");
}

TEST(SseData, RoundTripsThroughParser) {
  for (std::string_view payload :
       {"{\"x\":\"y\"}", "", "line1\nline2", "trailing\n", "\n\nleading", " spaced ", ":colon"}) {
    auto events = parseAll(sseData(payload));
    ASSERT_EQ(events.size(), 1u) << payload;
    EXPECT_EQ(events[0].data, payload);
  }
  auto events = parseAll(sseData("a\r\nb\rc"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a\nb\nc");  // line breaks are normalised to "\n"
}

TEST(SseParser, ParsesOpenAIStyleStream) {
  std::string stream = sseData(R"({"id":"1"})") + sseData(R"({"id":"2"})") + std::string(kSseDone);
  auto events = parseAll(stream);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].data, R"({"id":"1"})");
  EXPECT_EQ(events[1].data, R"({"id":"2"})");
  EXPECT_EQ(events[2].data, "[DONE]");
  EXPECT_EQ(events[0].event, "");
  EXPECT_EQ(events[0].id, "");
}

TEST(SseParser, JoinsMultipleDataLines) {
  auto events = parseAll("data: first\ndata: second\ndata:third\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "first\nsecond\nthird");
}

TEST(SseParser, StripsOnlyOneLeadingSpace) {
  auto events = parseAll("data:  two spaces\n\ndata:none\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, " two spaces");
  EXPECT_EQ(events[1].data, "none");
}

TEST(SseParser, FieldWithoutColonHasEmptyValue) {
  auto events = parseAll("data\n\ndata\ndata\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "");
  EXPECT_EQ(events[1].data, "\n");
}

TEST(SseParser, ValueKeepsLaterColons) {
  auto events = parseAll("data: a: b:c\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a: b:c");
}

TEST(SseParser, IgnoresCommentsAndUnknownFields) {
  auto events = parseAll(": keep-alive\n:\nfoo: bar\nDATA: upper\ndata: x\n: mid\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "x");
}

TEST(SseParser, BlankLineWithoutDataDispatchesNothing) {
  auto events = parseAll("\n\n: comment\n\nevent: ping\n\nid: 7\n\n");
  EXPECT_TRUE(events.empty());
}

TEST(SseParser, EventTypeAppliesToOneEvent) {
  auto events = parseAll("event: error\ndata: {\"e\":1}\n\ndata: plain\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "error");
  EXPECT_EQ(events[0].data, "{\"e\":1}");
  EXPECT_EQ(events[1].event, "");
}

TEST(SseParser, EventTypeWithoutDataIsDiscarded) {
  auto events = parseAll("event: ping\n\ndata: x\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "");
}

TEST(SseParser, LastEventIdPersists) {
  auto events = parseAll("id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].id, "1");
  EXPECT_EQ(events[1].id, "1");
  EXPECT_EQ(events[2].id, "");  // an empty id resets it
}

TEST(SseParser, IdContainingNulIsIgnored) {
  std::string stream = "id: good\ndata: a\n\nid: b";
  stream += '\0';
  stream += "ad\ndata: b\n\n";
  auto events = parseAll(stream);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].id, "good");
}

TEST(SseParser, IdUpToTheCapIsKept) {
  std::string id(kMaxSseIdBytes, 'i');
  auto events = parseAll("id: " + id + "\ndata: a\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, id);
}

TEST(SseParser, OverlongIdIsIgnoredNotCopiedIntoEveryEvent) {
  // An id is repeated in every later event: one long id line must not multiply into
  // (events x id) bytes. It is ignored and the previous id stays.
  std::string stream = "id: short\ndata: a\n\nid: " + std::string(kMaxSseIdBytes + 1, 'i') + "\n";
  for (int i = 0; i < 1000; ++i) stream += "data: b\n\n";
  auto events = parseAll(stream);
  ASSERT_EQ(events.size(), 1001u);
  size_t id_bytes = 0;
  for (const SseEvent& e : events) {
    EXPECT_EQ(e.id, "short");
    id_bytes += e.id.size();
  }
  EXPECT_EQ(id_bytes, 1001u * 5);
}

TEST(SseParser, IdCountsAgainstTheEventLimit) {
  SseParser parser(100);
  std::vector<SseEvent> out;
  EXPECT_FALSE(
      parser.feed("id: " + std::string(80, 'i') + "\ndata: " + std::string(30, 'x') + "\n\n", out));
  EXPECT_TRUE(parser.failed());
  EXPECT_TRUE(out.empty());
}

TEST(SseParser, ReadsRetry) {
  SseParser parser;
  std::vector<SseEvent> out;
  EXPECT_FALSE(parser.retryMs().has_value());
  EXPECT_TRUE(parser.feed("retry: 1500\n\n", out));
  EXPECT_EQ(parser.retryMs(), 1500u);
  EXPECT_TRUE(parser.feed("retry: 12x\nretry: -5\nretry:\nretry: 99999999999999999999999\n", out));
  EXPECT_EQ(parser.retryMs(), 1500u);  // invalid values are ignored
  EXPECT_TRUE(out.empty());
}

TEST(SseParser, AcceptsAllLineEndings) {
  std::vector<SseEvent> lf = parseAll("event: e\ndata: a\ndata: b\n\ndata: c\n\n");
  expectSame(parseAll("event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"), lf);
  expectSame(parseAll("event: e\rdata: a\rdata: b\r\rdata: c\r\r"), lf);
  expectSame(parseAll("event: e\r\ndata: a\rdata: b\n\r\ndata: c\r\r\n"), lf);
}

TEST(SseParser, CrLfSplitAcrossFeedsIsOneLineEnd) {
  // If the '\n' after a feed-final '\r' were read as a blank line, "a" and "b" would be two
  // events.
  auto events = parseSlices({"data: a\r", "\ndata: b\r\n\r\n"});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a\nb");

  events = parseSlices({"data: a\r", "", "\n", "data: b\r", "\r\n"});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a\nb");
}

TEST(SseParser, CrThenCrIsABlankLine) {
  auto events = parseSlices({"data: a\r", "\r", "data: b\n\n"});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "a");
  EXPECT_EQ(events[1].data, "b");
}

TEST(SseParser, SameEventsWhateverTheSplit) {
  const std::string stream =
      "\xEF\xBB\xBF: hello\r\n"
      "event: message\r\n"
      "id: 42\r\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"h\xC3\xA9\"}}]}\r\n"
      "\r\n"
      "data: line1\n"
      "data: line2\r"
      "\r"
      "retry: 10\n"
      "data:x\r\n\r\n"
      ":\n"
      "data: [DONE]\n\n"
      "data: unterminated";
  const std::vector<SseEvent> whole = parseAll(stream);
  ASSERT_EQ(whole.size(), 4u);
  EXPECT_EQ(whole[0].event, "message");
  EXPECT_EQ(whole[0].id, "42");
  EXPECT_EQ(whole[0].data, "{\"choices\":[{\"delta\":{\"content\":\"h\xC3\xA9\"}}]}");
  EXPECT_EQ(whole[1].data, "line1\nline2");
  EXPECT_EQ(whole[2].data, "x");
  EXPECT_EQ(whole[3].data, "[DONE]");
  EXPECT_EQ(whole[3].id, "42");

  for (size_t split = 0; split <= stream.size(); ++split) {
    SCOPED_TRACE(split);
    std::string_view sv(stream);
    expectSame(parseSlices({sv.substr(0, split), sv.substr(split)}), whole);
  }
  for (size_t a = 0; a <= stream.size(); a += 3) {
    for (size_t b = a; b <= stream.size(); b += 5) {
      std::string_view sv(stream);
      expectSame(parseSlices({sv.substr(0, a), sv.substr(a, b - a), sv.substr(b)}), whole);
    }
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < stream.size(); ++i) bytes.push_back(std::string_view(stream).substr(i, 1));
  expectSame(parseSlices(bytes), whole);
}

TEST(SseParser, StripsLeadingBomOnce) {
  auto events = parseAll(
      "\xEF\xBB\xBF"
      "data: a\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a");

  // A second BOM is content: the line's field name is then not "data".
  events = parseAll(
      "\xEF\xBB\xBF\xEF\xBB\xBF"
      "data: a\n\ndata: b\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "b");
}

TEST(SseParser, PartialBomIsContent) {
  // "\xEF\xBB" then 'd': not a BOM, so the first line's field is "\xEF\xBB" "data".
  auto events = parseSlices({"\xEF", "\xBB", "data: a\n\ndata: b\n\n"});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "b");

  events = parseSlices({"\xEF\xBB", "\xBF", "data: a\n\n"});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a");
}

TEST(SseParser, UnterminatedEventIsNotDispatched) {
  SseParser parser;
  std::vector<SseEvent> out;
  EXPECT_TRUE(parser.feed("data: a\n", out));
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(parser.feed("data: b", out));
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(parser.feed("\n\n", out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data, "a\nb");
}

TEST(SseParser, AppendsWithoutClearingOutput) {
  SseParser parser;
  std::vector<SseEvent> out;
  EXPECT_TRUE(parser.feed("data: 1\n\n", out));
  EXPECT_TRUE(parser.feed("data: 2\n\n", out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].data, "1");
  EXPECT_EQ(out[1].data, "2");
}

TEST(SseParser, EventAtTheLimitIsAccepted) {
  std::string data(100, 'x');
  auto events = parseAll("data: " + data + "\n\n", 100);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, data);
}

TEST(SseParser, OversizedDataFails) {
  SseParser parser(100);
  std::vector<SseEvent> out;
  EXPECT_FALSE(parser.feed("data: " + std::string(101, 'x') + "\n\n", out));
  EXPECT_TRUE(parser.failed());
  EXPECT_TRUE(out.empty());
  // Failure is sticky: even a valid event is refused afterwards.
  EXPECT_FALSE(parser.feed("data: ok\n\n", out));
  EXPECT_TRUE(out.empty());
}

TEST(SseParser, ManyDataLinesOverLimitFail) {
  SseParser parser(100);
  std::vector<SseEvent> out;
  bool ok = true;
  for (int i = 0; i < 20 && ok; ++i) ok = parser.feed("data: 0123456789\n", out);
  EXPECT_FALSE(ok);
  EXPECT_TRUE(parser.failed());
}

TEST(SseParser, LongUnterminatedLineFails) {
  SseParser parser(1000);
  std::vector<SseEvent> out;
  bool ok = parser.feed("data: ", out);
  for (int i = 0; i < 100 && ok; ++i) ok = parser.feed(std::string(50, 'y'), out);
  EXPECT_FALSE(ok);
  EXPECT_TRUE(parser.failed());
}

TEST(SseParser, LongCommentSplitAcrossFeedsFails) {
  // A comment costs nothing once complete, but an endless one must not grow without bound.
  SseParser parser(64);
  std::vector<SseEvent> out;
  EXPECT_TRUE(parser.feed(":" + std::string(40, 'c'), out));
  EXPECT_FALSE(parser.feed(std::string(40, 'c'), out));
}

TEST(SseParser, SmallEventsNeverAccumulate) {
  SseParser parser(64);
  std::vector<SseEvent> out;
  for (int i = 0; i < 1000; ++i)
    ASSERT_TRUE(parser.feed("data: 0123456789012345678901234\n\n", out));
  EXPECT_EQ(out.size(), 1000u);
}

TEST(SseParser, EventsBeforeOverflowAreKept) {
  SseParser parser(20);
  std::vector<SseEvent> out;
  EXPECT_FALSE(parser.feed("data: small\n\ndata: " + std::string(30, 'z') + "\n\n", out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data, "small");
}

}  // namespace
}  // namespace api
