// The runtime's generation loop: the sampler's choices and the generator's
// bookkeeping, over a stand-in Forward (no artifact needed).
#include "generation.h"

#include <gtest/gtest.h>

#include <functional>

#include <cmath>
#include <map>
#include <vector>

namespace {

using kiln::runtime::Generator;
using kiln::runtime::GenerationModel;
using kiln::runtime::Sampler;
using kiln::runtime::SamplingOptions;

TEST(Sampler, GreedyTakesTheFirstLargest) {
  Sampler sampler(SamplingOptions{});
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(sampler.sample(logits.data(), logits.size()), 1);
}

TEST(Sampler, TopKOfOneIsGreedy) {
  SamplingOptions options;
  options.temperature = 5.0;
  options.topK = 1;
  Sampler sampler(options);
  std::vector<float> logits = {0.1f, 0.2f, 3.0f, 0.3f};
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(sampler.sample(logits.data(), logits.size()), 2);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  SamplingOptions options;
  options.temperature = 2.0;
  options.seed = 7;
  Sampler sampler(options);
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, 3.0f};
  std::vector<double> want(4);
  double sum = 0;
  for (int i = 0; i < 4; ++i)
    sum += want[i] = std::exp(logits[i] / 2.0);
  std::vector<int> counts(4);
  const int draws = 40000;
  for (int i = 0; i < draws; ++i)
    ++counts[sampler.sample(logits.data(), logits.size())];
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(counts[i] / double(draws), want[i] / sum, 0.01) << i;
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  SamplingOptions options;
  options.temperature = 1.0;
  options.topP = 0.6;
  Sampler sampler(options);
  // Probabilities 0.5, 0.3, 0.2: {0, 1} reaches 0.6.
  std::vector<float> logits = {std::log(0.3f), std::log(0.5f),
                               std::log(0.2f)};
  std::map<int64_t, int> counts;
  for (int i = 0; i < 5000; ++i)
    ++counts[sampler.sample(logits.data(), logits.size())];
  EXPECT_EQ(counts.count(2), 0u);
  EXPECT_NEAR(counts[1] / 5000.0, 0.5 / 0.8, 0.03);
}

TEST(Sampler, TinyTemperaturesAndInfiniteLogitsPickTheLargest) {
  SamplingOptions options;
  options.temperature = 1e-300;
  Sampler sampler(options);
  std::vector<float> logits = {0.5f, 2.0f, -1.0f};
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(sampler.sample(logits.data(), logits.size()), 1);
  options.temperature = 1.0;
  Sampler hot(options);
  logits = {0.5f, INFINITY, 3.0f};
  EXPECT_EQ(hot.sample(logits.data(), logits.size()), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingOptions options;
  options.temperature = 1.0;
  options.seed = 42;
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i)
    logits[i] = std::sin(float(i));
  Sampler a(options), b(options);
  std::vector<int64_t> first, second;
  for (int i = 0; i < 100; ++i) {
    first.push_back(a.sample(logits.data(), logits.size()));
    second.push_back(b.sample(logits.data(), logits.size()));
  }
  EXPECT_EQ(first, second);
  a.reseed();
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(a.sample(logits.data(), logits.size()), first[i]);
}

GenerationModel model(bool fixed) {
  GenerationModel m;
  m.entry = "prefill";
  m.vocab = 8;
  m.maxSequence = 6;
  m.fixedSequence = fixed;
  m.eos = {7};
  m.pad = 0;
  return m;
}

/// The next token is the last one plus one: a counter model.
struct Counter {
  std::vector<std::vector<int64_t>> seen;
  std::vector<size_t> lasts;
  absl::Status operator()(const std::vector<int64_t> &ids,
                          const std::vector<int64_t> &, size_t last,
                          std::vector<float> &logits) {
    seen.push_back(ids);
    lasts.push_back(last);
    std::fill(logits.begin(), logits.end(), 0.0f);
    logits[(ids[last] + 1) % logits.size()] = 1.0f;
    return absl::OkStatus();
  }
};

TEST(Generator, StepsAppendTokensUntilTheSequenceIsFull) {
  auto counter = std::make_shared<Counter>();
  Generator generator(model(false), SamplingOptions{},
                      [counter](auto &ids, auto &padding, size_t last,
                                auto &logits) {
                        return (*counter)(ids, padding, last, logits);
                      });
  EXPECT_FALSE(generator.step().ok()) << "no prompt yet";
  int64_t prompt[] = {2, 3};
  ASSERT_TRUE(generator.feed(prompt, 2).ok());
  for (int64_t want = 4; want <= 8; ++want) {
    ASSERT_FALSE(generator.full());
    auto token = generator.step();
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_EQ(*token, want % 8);
  }
  // 7 tokens: the last one came from 6, the most the model takes.
  EXPECT_TRUE(generator.full());
  EXPECT_FALSE(generator.step().ok());
  EXPECT_EQ(counter->seen.back().size(), 6u);
  EXPECT_TRUE(generator.isEos(7));
  generator.reset();
  EXPECT_TRUE(generator.tokens().empty());
}

TEST(Generator, FixedSequencesArePaddedAndTheLastRealPositionRead) {
  auto counter = std::make_shared<Counter>();
  Generator generator(model(true), SamplingOptions{},
                      [counter](auto &ids, auto &padding, size_t last,
                                auto &logits) {
                        return (*counter)(ids, padding, last, logits);
                      });
  int64_t prompt[] = {1, 2, 3};
  ASSERT_TRUE(generator.feed(prompt, 3).ok());
  ASSERT_EQ(*generator.step(), 4);
  EXPECT_EQ(counter->seen[0], (std::vector<int64_t>{1, 2, 3, 0, 0, 0}));
  EXPECT_EQ(counter->lasts[0], 2u);
}

/// A counter model with a cache: decode sees one token and its position,
/// and answers the token plus one (the cache's contents are the Counter's
/// business; the generator's is to call it at the right positions).
struct CachedCounter {
  Counter prefill;
  std::vector<std::pair<int64_t, size_t>> decoded;  // (token, past)
  bool failNext = false;
  absl::Status decode(const std::vector<int64_t> &ids, size_t past,
                      const std::vector<int64_t> &,
                      std::vector<float> &logits) {
    if (failNext) {
      failNext = false;
      return absl::InternalError("device lost");
    }
    decoded.push_back({ids[0], past});
    std::fill(logits.begin(), logits.end(), 0.0f);
    logits[(ids[0] + 1) % logits.size()] = 1.0f;
    return absl::OkStatus();
  }
};

/// A generator over `c`'s prefill and decode.
Generator cachedGenerator(const GenerationModel &m,
                          std::shared_ptr<CachedCounter> c,
                          std::function<bool()> intact = nullptr) {
  return Generator(
      m, SamplingOptions{},
      [c](auto &ids, auto &padding, size_t last, auto &logits) {
        return c->prefill(ids, padding, last, logits);
      },
      [c](auto &ids, size_t past, auto &padding, auto &logits) {
        return c->decode(ids, past, padding, logits);
      },
      std::move(intact));
}

TEST(Generator, WithACachePrefillsOnceThenDecodesEachToken) {
  auto c = std::make_shared<CachedCounter>();
  GenerationModel m = model(false);
  m.decodeEntry = "decode";
  Generator generator = cachedGenerator(m, c);
  int64_t prompt[] = {1, 2};
  ASSERT_TRUE(generator.feed(prompt, 2).ok());
  EXPECT_EQ(*generator.step(), 3);  // prefill of [1, 2]
  EXPECT_EQ(*generator.step(), 4);  // decode 3 at position 2
  EXPECT_EQ(c->prefill.seen.size(), 1u);
  EXPECT_EQ(c->decoded,
            (std::vector<std::pair<int64_t, size_t>>{{3, 2}}));
  // Tokens fed after a step are decoded one by one, the last one's logits
  // giving the next token.
  int64_t more[] = {0, 5};
  ASSERT_TRUE(generator.feed(more, 2).ok());
  EXPECT_EQ(*generator.step(), 6);
  EXPECT_EQ(c->decoded, (std::vector<std::pair<int64_t, size_t>>{
                            {3, 2}, {4, 3}, {0, 4}, {5, 5}}));
  EXPECT_EQ(c->prefill.seen.size(), 1u);
  // A failed decode leaves the cache unknown: the next step prefills.
  generator.reset();
  ASSERT_TRUE(generator.feed(prompt, 2).ok());
  ASSERT_TRUE(generator.step().ok());
  c->failNext = true;
  EXPECT_FALSE(generator.step().ok());
  EXPECT_EQ(generator.tokens().size(), 3u);
  EXPECT_EQ(*generator.step(), 4);
  EXPECT_EQ(c->prefill.seen.size(), 3u);
  EXPECT_EQ(c->prefill.seen.back(), (std::vector<int64_t>{1, 2, 3}));
}

TEST(Generator, ACacheSomethingElseWroteIsFilledAgain) {
  auto c = std::make_shared<CachedCounter>();
  GenerationModel m = model(false);
  m.decodeEntry = "decode";
  bool intact = true;
  Generator generator =
      cachedGenerator(m, c, [&intact] { return intact; });
  int64_t prompt[] = {1, 2};
  ASSERT_TRUE(generator.feed(prompt, 2).ok());
  ASSERT_TRUE(generator.step().ok());
  ASSERT_TRUE(generator.step().ok());
  EXPECT_EQ(c->prefill.seen.size(), 1u);
  // Another user of the session ran in between: prefill again.
  intact = false;
  EXPECT_EQ(*generator.step(), 5);
  EXPECT_EQ(c->prefill.seen.size(), 2u);
  EXPECT_EQ(c->prefill.seen.back(), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(c->decoded.size(), 1u);
}

TEST(Generator, WithoutADecodeEntryEveryStepPrefills) {
  auto c = std::make_shared<CachedCounter>();
  Generator generator = cachedGenerator(model(false), c);
  int64_t prompt[] = {1};
  ASSERT_TRUE(generator.feed(prompt, 1).ok());
  ASSERT_TRUE(generator.step().ok());
  ASSERT_TRUE(generator.step().ok());
  EXPECT_EQ(c->prefill.seen.size(), 2u);
  EXPECT_TRUE(c->decoded.empty());
}

/// A counter model per row: each row's next token is its last one plus
/// one (vocab 8), with the ids and padding it saw.
struct RowCounter {
  size_t batch = 2;
  std::vector<std::vector<int64_t>> seen, paddings;
  std::vector<size_t> pasts;
  void answer(const std::vector<int64_t> &last, std::vector<float> &logits) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    for (size_t r = 0; r < batch; ++r)
      logits[r * 8 + size_t(last[r] + 1) % 8] = 1.0f;
  }
  absl::Status prefill(const std::vector<int64_t> &ids,
                       const std::vector<int64_t> &padding, size_t last,
                       std::vector<float> &logits) {
    seen.push_back(ids);
    paddings.push_back(padding);
    size_t width = ids.size() / batch;
    answer({ids[last], ids[width + last]}, logits);
    return absl::OkStatus();
  }
  absl::Status decode(const std::vector<int64_t> &ids, size_t past,
                      const std::vector<int64_t> &padding,
                      std::vector<float> &logits) {
    seen.push_back(ids);
    paddings.push_back(padding);
    pasts.push_back(past);
    answer(ids, logits);
    return absl::OkStatus();
  }
};

TEST(Generator, RowsOfDifferentLengthsArePaddedOnTheLeft) {
  auto c = std::make_shared<RowCounter>();
  GenerationModel m = model(false);
  m.batch = 2;
  m.padding = true;
  m.decodeEntry = "decode";
  auto make = [&](GenerationModel gm) {
    return Generator(
        gm, SamplingOptions{},
        [c](auto &ids, auto &padding, size_t last, auto &logits) {
          return c->prefill(ids, padding, last, logits);
        },
        [c](auto &ids, size_t past, auto &padding, auto &logits) {
          return c->decode(ids, past, padding, logits);
        });
  };
  Generator generator = make(m);
  EXPECT_FALSE(generator.feedRows({{1}}).ok()) << "one prompt for two rows";
  EXPECT_FALSE(generator.feedRows({{1}, {}}).ok()) << "an empty prompt";
  ASSERT_TRUE(generator.feedRows({{1, 2, 3}, {5}}).ok());
  EXPECT_FALSE(generator.feedRows({{1}, {2}}).ok()) << "not after a start";
  auto first = generator.stepRows();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, (std::vector<int64_t>{4, 6}));
  // Row 1 is padded on the left with the pad token (0) to end with row 0.
  EXPECT_EQ(c->seen[0], (std::vector<int64_t>{1, 2, 3, 0, 0, 5}));
  EXPECT_EQ(c->paddings[0], (std::vector<int64_t>{0, 2}));
  auto second = generator.stepRows();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(c->seen[1], (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(c->pasts, (std::vector<size_t>{3}));
  EXPECT_EQ(generator.row(0), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(generator.row(1), (std::vector<int64_t>{5, 6, 7}));
  EXPECT_EQ(generator.logits().size(), 16u);
  // Without a padding input, rows must be as long as one another.
  m.padding = false;
  Generator plain = make(m);
  EXPECT_FALSE(plain.feedRows({{1, 2}, {3}}).ok());
  EXPECT_TRUE(plain.feedRows({{1, 2}, {3, 4}}).ok());
}

TEST(Generator, FeedChecksIdsAndLength) {
  Generator generator(model(false), SamplingOptions{},
                      [](auto &, auto &, size_t, auto &) {
                        return absl::OkStatus();
                      });
  int64_t bad[] = {8};
  absl::Status status = generator.feed(bad, 1);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("outside the vocabulary of 8"),
            std::string::npos);
  int64_t many[7] = {};
  status = generator.feed(many, 7);
  EXPECT_NE(status.message().find("longer than the 6"), std::string::npos);
}

} // namespace
