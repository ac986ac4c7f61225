using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;

namespace EdgeLM.Inference;

/// <summary>
/// Picks the next token from a logit vector: repetition penalty, top-k, softmax with temperature, top-p, min-p,
/// then a draw from the renormalized distribution with a seeded xoshiro256** generator.
/// All scratch is allocated in the constructor; <see cref="Sample"/> does not allocate.
/// Not thread-safe: one sampler per generation stream.
/// </summary>
public sealed class Sampler
{
    // The nucleus is found by sorting growing chunks of the best remaining candidates; most nuclei of a
    // sharp LLM distribution fit in the first chunk, so a 150k-entry vocabulary is never fully sorted.
    private const int FirstNucleusChunk = 64;

    private readonly SamplingOptions _options;
    private readonly int _vocabSize;

    // Indexed by token id: penalized logits, overwritten in place by unnormalized probabilities.
    private readonly float[] _scores;

    // Ranking keys of surviving candidates (see RankKey); sorting keys ascending sorts tokens best-first.
    private readonly ulong[] _candidates;

    // Marks tokens already penalized in this call, so a token repeated in the window is penalized once.
    private readonly int[]? _penaltyStamp;
    private int _penaltyGeneration;

    private Xoshiro256StarStar _rng;

    public Sampler(SamplingOptions options, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (vocabSize <= 0) throw new ArgumentException($"sampler vocabulary size must be > 0, got {vocabSize}", nameof(vocabSize));

        _options = options;
        _vocabSize = vocabSize;
        _scores = new float[vocabSize];
        if (!options.IsGreedy) _candidates = new ulong[vocabSize];
        else _candidates = [];
        if (options.RepetitionPenalty != 1f && options.RepetitionWindow > 0) _penaltyStamp = new int[vocabSize];

        Seed = options.Seed ?? SeedFromOperatingSystem();
        _rng = new Xoshiro256StarStar(Seed);
    }

    public SamplingOptions Options => _options;
    public int VocabSize => _vocabSize;

    /// <summary>The seed in use (drawn from the OS when the options had none), so a run can be reproduced.</summary>
    public ulong Seed { get; }

    /// <summary>
    /// Chooses a token id. <paramref name="recentTokens"/> is the token history (oldest first); only its last
    /// <see cref="SamplingOptions.RepetitionWindow"/> entries are penalized. NaN logits count as -infinity and
    /// +infinity as the largest float.
    /// </summary>
    /// <exception cref="InvalidOperationException">Every logit is -infinity or NaN.</exception>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> recentTokens)
    {
        if (logits.Length != _vocabSize)
            throw new ArgumentException($"sampler expects {_vocabSize} logits, got {logits.Length}", nameof(logits));

        LoadScores(logits);
        ApplyRepetitionPenalty(recentTokens);
        if (_options.IsGreedy) return ArgMax();

        Span<ulong> candidates = _candidates.AsSpan(0, CollectCandidates());

        int topK = _options.TopK;
        if (topK > 0 && topK < candidates.Length)
        {
            SelectSmallest(candidates, topK);
            candidates = candidates[..topK];
        }

        double total = ApplySoftmaxWeights(candidates);

        if (_options.TopP < 1f) candidates = candidates[..NucleusSize(candidates, total)];
        if (_options.MinP > 0f) candidates = candidates[..KeepAtLeastMinP(candidates)];

        return Draw(candidates);
    }

    private void LoadScores(ReadOnlySpan<float> logits)
    {
        float[] scores = _scores;
        for (int i = 0; i < logits.Length; i++)
        {
            float x = logits[i];
            if (float.IsNaN(x)) x = float.NegativeInfinity;
            // Clamping keeps (x - max) finite, so +infinity tokens share the mass instead of producing NaN.
            else if (x == float.PositiveInfinity) x = float.MaxValue;
            scores[i] = x;
        }
    }

    private void ApplyRepetitionPenalty(ReadOnlySpan<int> recentTokens)
    {
        if (_penaltyStamp is null || recentTokens.IsEmpty) return;
        int window = _options.RepetitionWindow;
        if (recentTokens.Length > window) recentTokens = recentTokens[^window..];

        if (++_penaltyGeneration == int.MaxValue)
        {
            Array.Clear(_penaltyStamp);
            _penaltyGeneration = 1;
        }

        float penalty = _options.RepetitionPenalty;
        foreach (int token in recentTokens)
        {
            if ((uint)token >= (uint)_vocabSize)
                throw new ArgumentException($"recent token id {token} is outside the vocabulary [0, {_vocabSize})", nameof(recentTokens));
            if (_penaltyStamp[token] == _penaltyGeneration) continue;
            _penaltyStamp[token] = _penaltyGeneration;
            float score = _scores[token];
            _scores[token] = score > 0f ? score / penalty : score * penalty;
        }
    }

    private int ArgMax()
    {
        float[] scores = _scores;
        int best = -1;
        float bestScore = float.NegativeInfinity;
        for (int i = 0; i < scores.Length; i++)
        {
            // Strictly greater: the lowest index wins ties.
            if (scores[i] > bestScore)
            {
                bestScore = scores[i];
                best = i;
            }
        }
        if (best < 0) throw NoFiniteLogits();
        return best;
    }

    private int CollectCandidates()
    {
        float[] scores = _scores;
        ulong[] candidates = _candidates;
        int count = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            if (scores[i] > float.NegativeInfinity) candidates[count++] = RankKey(scores[i], i);
        }
        if (count == 0) throw NoFiniteLogits();
        return count;
    }

    /// <summary>Replaces each candidate's score by exp((score - max) / T) and returns their sum.</summary>
    private double ApplySoftmaxWeights(ReadOnlySpan<ulong> candidates)
    {
        ulong best = ulong.MaxValue;
        foreach (ulong key in candidates) best = Math.Min(best, key);
        float maxScore = _scores[TokenOf(best)];
        float temperature = _options.Temperature;

        double total = 0;
        foreach (ulong key in candidates)
        {
            int token = TokenOf(key);
            float weight = MathF.Exp((_scores[token] - maxScore) / temperature);
            _scores[token] = weight;
            total += weight;
        }
        return total;
    }

    /// <summary>
    /// Sorts the best candidates to the front, chunk by chunk, until their mass reaches top-p (llama.cpp rule:
    /// the token that crosses the threshold is kept). Returns how many are kept.
    /// </summary>
    private int NucleusSize(Span<ulong> candidates, double total)
    {
        double threshold = _options.TopP * total;
        double cumulative = 0;
        int sorted = 0;
        long chunk = FirstNucleusChunk;
        while (sorted < candidates.Length)
        {
            int end = (int)Math.Min(candidates.Length, sorted + chunk);
            Span<ulong> rest = candidates[sorted..];
            SelectSmallest(rest, end - sorted);
            rest[..(end - sorted)].Sort();
            for (int i = sorted; i < end; i++)
            {
                cumulative += _scores[TokenOf(candidates[i])];
                if (cumulative >= threshold) return i + 1;
            }
            sorted = end;
            chunk *= 2;
        }
        return candidates.Length;
    }

    /// <summary>Compacts, in order, the candidates whose probability is at least min-p times the largest.</summary>
    private int KeepAtLeastMinP(Span<ulong> candidates)
    {
        // Weights are relative to the best token, whose weight is exp(0) = 1, so min-p is the threshold itself.
        float threshold = _options.MinP;
        int kept = 0;
        foreach (ulong key in candidates)
        {
            if (_scores[TokenOf(key)] >= threshold) candidates[kept++] = key;
        }
        return kept;
    }

    private int Draw(ReadOnlySpan<ulong> candidates)
    {
        double total = 0;
        foreach (ulong key in candidates) total += _scores[TokenOf(key)];

        double target = _rng.NextDouble() * total;
        double cumulative = 0;
        foreach (ulong key in candidates)
        {
            int token = TokenOf(key);
            cumulative += _scores[token];
            if (target < cumulative) return token;
        }

        // Only reached when rounding made target == total; never return a token whose probability is zero.
        for (int i = candidates.Length - 1; i >= 0; i--)
        {
            int token = TokenOf(candidates[i]);
            if (_scores[token] > 0f) return token;
        }
        return TokenOf(candidates[0]);
    }

    /// <summary>
    /// A key whose ascending order is descending score, then ascending token id: a strict total order, so
    /// selection and sorting are deterministic and need no comparer (which would allocate when boxed).
    /// </summary>
    internal static ulong RankKey(float score, int token)
    {
        uint bits = score == 0f ? 0u : BitConverter.SingleToUInt32Bits(score); // -0 ranks as +0
        uint ascending = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        return ((ulong)~ascending << 32) | (uint)token;
    }

    internal static int TokenOf(ulong key) => (int)(uint)key;

    /// <summary>
    /// Reorders <paramref name="values"/> so that its first <paramref name="count"/> entries are its
    /// <paramref name="count"/> smallest (in no particular order). Expected linear time (quickselect with
    /// median-of-three); falls back to a full sort of the remaining range if partitioning keeps going badly.
    /// </summary>
    internal static void SelectSmallest(Span<ulong> values, int count)
    {
        if (count <= 0 || count >= values.Length) return;
        int target = count - 1;
        int lo = 0, hi = values.Length - 1;
        int budget = 2 * (BitOperations.Log2((uint)values.Length) + 1);
        while (lo < hi)
        {
            if (budget-- == 0)
            {
                values[lo..(hi + 1)].Sort();
                return;
            }

            int mid = lo + ((hi - lo) >> 1);
            if (values[mid] < values[lo]) Swap(values, mid, lo);
            if (values[hi] < values[lo]) Swap(values, hi, lo);
            if (values[hi] < values[mid]) Swap(values, hi, mid);
            ulong pivot = values[mid];

            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i] < pivot) i++;
                while (values[j] > pivot) j--;
                if (i <= j)
                {
                    Swap(values, i, j);
                    i++;
                    j--;
                }
            }

            // Now values[lo..j] <= pivot <= values[i..hi], and anything strictly between equals the pivot.
            if (target <= j) hi = j;
            else if (target >= i) lo = i;
            else return;
        }
    }

    private static void Swap(Span<ulong> values, int a, int b) => (values[a], values[b]) = (values[b], values[a]);

    private static InvalidOperationException NoFiniteLogits() =>
        new("cannot sample a token: every logit is -infinity or NaN");

    private static ulong SeedFromOperatingSystem()
    {
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        return BinaryPrimitives.ReadUInt64LittleEndian(bytes);
    }
}
