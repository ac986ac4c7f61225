using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Inference;

public class InferenceSessionTests
{
    public static TheoryData<TinyModelSpec> Specs => new()
    {
        new TinyModelSpec(),
        new TinyModelSpec(GgmlType.F16, Biases: true, Tied: true, Rope: RopeStyle.Neox, RopeTheta: 1e4, Layers: 3),
        new TinyModelSpec(GgmlType.F32, Biases: false, Tied: true, Rope: RopeStyle.Interleaved, RopeTheta: 1e4),
        new TinyModelSpec(GgmlType.F16, Biases: false, Tied: false, Rope: RopeStyle.Interleaved, RopeTheta: 1e6, KvHeads: 1),
        new TinyModelSpec(GgmlType.BF16, Biases: true, Tied: false, Rope: RopeStyle.Neox, KvHeads: 4, Seed: 7),
    };

    /// <summary>Engine logits (float32) against the float64 reference: tiny error relative to the spread, same argmax.</summary>
    private static void AssertMatches(double[] expected, ReadOnlySpan<float> actual, string where, double relativeTolerance = 2e-5)
    {
        Assert.Equal(expected.Length, actual.Length);
        double spread = expected.Max() - expected.Min();
        Assert.True(spread > 0.5, $"{where}: degenerate test model (logit spread {spread})");
        double maxDiff = 0;
        for (int i = 0; i < expected.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(expected[i] - actual[i]));
        Assert.True(maxDiff <= relativeTolerance * spread, $"{where}: max |diff| {maxDiff:G3} vs spread {spread:G3}");

        int best = Array.IndexOf(expected, expected.Max());
        double runnerUp = expected.Where((_, i) => i != best).Max();
        if (expected[best] - runnerUp > 2 * maxDiff)
            Assert.Equal(best, ArgMax(actual));
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    private static float[] ForwardAll(InferenceSession session, int[] tokens)
    {
        var logits = new float[tokens.Length * session.Config.VocabSize];
        session.ForwardAll(tokens, logits);
        return logits;
    }

    /// <summary>Quantized weights: the engine must agree with the float64 reference run on the dequantized weights.</summary>
    public static TheoryData<TinyModelSpec> QuantizedSpecs => new()
    {
        new TinyModelSpec(GgmlType.Q8_0),
        new TinyModelSpec(GgmlType.Q4_0, Tied: true),
        new TinyModelSpec(GgmlType.Q4_1, Biases: false, Rope: RopeStyle.Interleaved),
        new TinyModelSpec(GgmlType.Q5_0),
        new TinyModelSpec(GgmlType.Q5_1, KvHeads: 1),
        new TinyModelSpec(GgmlType.Q2_K, Hidden: 256, Ff: 512),
        new TinyModelSpec(GgmlType.Q3_K, Hidden: 256, Ff: 512, Tied: true),
        new TinyModelSpec(GgmlType.Q4_K, Hidden: 256, Ff: 512),
        new TinyModelSpec(GgmlType.Q5_K, Hidden: 256, Ff: 512),
        new TinyModelSpec(GgmlType.Q6_K, Hidden: 256, Ff: 512),
    };

    // In the kernel category so that CI also runs it with AVX-512 and AVX2 disabled: every weight type against the
    // reference on every ISA path, through the whole forward pass.
    [Theory]
    [Trait("Category", "Kernels")]
    [MemberData(nameof(QuantizedSpecs))]
    public void QuantizedWeightsMatchTheDequantizedReference(TinyModelSpec spec)
    {
        using var model = new TinyModel(spec);
        Assert.Equal(spec.WeightType, model.Weights.Layers[0].Wq.Type);
        int[] tokens = model.RandomTokens(9, seed: 5);
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(tokens);
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        float[] logits = ForwardAll(session, tokens);
        int v = model.Config.VocabSize;
        // The integer kernels quantize activations to 8 bits (Q8_0/Q8_1/Q8_K, as llama.cpp does), which the float64
        // reference does not: ~0.4% relative error per matmul, compounding over layers. Kernel bugs give O(spread) errors.
        for (int p = 0; p < tokens.Length; p++)
            AssertMatches(expected[p], logits.AsSpan(p * v, v), $"{spec} position {p}", relativeTolerance: QuantizedActivationTolerance);
    }

    private const double QuantizedActivationTolerance = 2e-2;

    [Theory]
    [Trait("Category", "Kernels")]
    [MemberData(nameof(Specs))]
    public void PrefillMatchesReferenceAtEveryPosition(TinyModelSpec spec)
    {
        using var model = new TinyModel(spec);
        int[] tokens = model.RandomTokens(17, seed: 3);
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(tokens);
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        float[] logits = ForwardAll(session, tokens);
        int v = model.Config.VocabSize;
        for (int p = 0; p < tokens.Length; p++) AssertMatches(expected[p], logits.AsSpan(p * v, v), $"{spec} position {p}");
        Assert.Equal(tokens.Length, session.Position);
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void DecodeTokenByTokenMatchesReference(TinyModelSpec spec)
    {
        using var model = new TinyModel(spec);
        int[] tokens = model.RandomTokens(12, seed: 4);
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(tokens);
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        for (int p = 0; p < tokens.Length; p++)
            AssertMatches(expected[p], session.Forward(tokens.AsSpan(p, 1)), $"{spec} position {p}");
    }

    [Fact]
    public void PrefillThenDecodeMatchesReference()
    {
        using var model = new TinyModel(new TinyModelSpec(GgmlType.F16, Layers: 3));
        int[] tokens = model.RandomTokens(11, seed: 5);
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(tokens);
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        AssertMatches(expected[4], session.Forward(tokens.AsSpan(0, 5)), "prefill of 5");
        for (int p = 5; p < tokens.Length; p++) AssertMatches(expected[p], session.Forward(tokens.AsSpan(p, 1)), $"decode at {p}");
    }

    public static TheoryData<TinyModelSpec> PruningSpecs => new()
    {
        new TinyModelSpec(GgmlType.F32),
        new TinyModelSpec(GgmlType.F16, Tied: true),
        new TinyModelSpec(GgmlType.BF16, Biases: false),
        new TinyModelSpec(GgmlType.Q8_0),
        new TinyModelSpec(GgmlType.Q4_0, KvHeads: 1),
        new TinyModelSpec(GgmlType.Q5_1),
        new TinyModelSpec(GgmlType.Q4_K, Hidden: 256, Ff: 512),
    };

    // Forward keeps only the last row through the last layer's attention and feed-forward (and no row of the chunks
    // before the last); its logits must be the very bits of the full run's last row, on every ISA path.
    [Theory]
    [Trait("Category", "Kernels")]
    [MemberData(nameof(PruningSpecs))]
    public void ForwardKeepsOnlyTheLastRowWithTheSameBits(TinyModelSpec spec)
    {
        using var model = new TinyModel(spec);
        int v = model.Config.VocabSize;
        int[] tokens = model.RandomTokens(23, seed: 15);
        foreach (int batch in new[] { 64, 8, 7 })
        {
            using var full = new InferenceSession(model.Config, model.Weights, threads: 2, batchSize: batch);
            float[] all = ForwardAll(full, tokens);
            using var session = new InferenceSession(model.Config, model.Weights, threads: 2, batchSize: batch);
            Assert.Equal(all.AsSpan((tokens.Length - 1) * v, v).ToArray(), session.Forward(tokens).ToArray());
            // Every row's key and value was still stored: decoding on gives the full run's bits, and a prompt of
            // several tokens after the first one too.
            for (int i = 0; i < 3; i++)
                Assert.Equal(full.Forward(tokens.AsSpan(i, 1)).ToArray(), session.Forward(tokens.AsSpan(i, 1)).ToArray());
            float[] rest = ForwardAll(full, tokens[4..13]);
            Assert.Equal(rest.AsSpan(8 * v, v).ToArray(), session.Forward(tokens.AsSpan(4, 9)).ToArray());
        }
    }

    [Fact]
    public void PromptsLongerThanTheBatchAreChunked()
    {
        using var model = new TinyModel(new TinyModelSpec(Rope: RopeStyle.Interleaved));
        int[] tokens = model.RandomTokens(21, seed: 6);
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(tokens);
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2, batchSize: 8);
        Assert.Equal(8, session.BatchSize);
        float[] logits = ForwardAll(session, tokens);
        int v = model.Config.VocabSize;
        for (int p = 0; p < tokens.Length; p++) AssertMatches(expected[p], logits.AsSpan(p * v, v), $"position {p}");

        session.Reset();
        AssertMatches(expected[^1], session.Forward(tokens), "Forward of 21 tokens in chunks of 8");
    }

    [Fact]
    public void TruncateThenForwardEqualsAFreshRun()
    {
        using var model = new TinyModel(new TinyModelSpec());
        int[] shared = model.RandomTokens(9, seed: 8), first = model.RandomTokens(6, seed: 9), second = model.RandomTokens(5, seed: 10);
        using var fresh = new InferenceSession(model.Config, model.Weights, threads: 2);
        float[] expected = ForwardAll(fresh, [.. shared, .. second]);

        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        session.Forward(shared);
        session.Forward(first);
        session.Truncate(shared.Length);
        Assert.Equal(shared.Length, session.Position);
        float[] actual = ForwardAll(session, second);
        int v = model.Config.VocabSize;
        Assert.Equal(expected.AsSpan(shared.Length * v).ToArray(), actual);

        Assert.Throws<ArgumentOutOfRangeException>(() => session.Truncate(session.Position + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Truncate(-1));
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    public void ThreadCountDoesNotChangeABit(GgmlType type)
    {
        using var model = new TinyModel(new TinyModelSpec(type, Ff: 162, Vocab: 301)); // row counts not multiples of 4
        int[] tokens = model.RandomTokens(13, seed: 11);
        float[][] results = new float[3][];
        int[] threadCounts = [1, 2, 3];
        for (int i = 0; i < threadCounts.Length; i++)
        {
            using var session = new InferenceSession(model.Config, model.Weights, threads: threadCounts[i], batchSize: 5);
            float[] all = ForwardAll(session, tokens[..10]);
            float[] decoded = session.Forward(tokens.AsSpan(10, 3)).ToArray();
            results[i] = [.. all, .. decoded];
        }
        Assert.Equal(results[0], results[1]);
        Assert.Equal(results[0], results[2]);
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    public void PrefillAndDecodeAgreeBitwise(GgmlType type)
    {
        using var model = new TinyModel(new TinyModelSpec(type));
        int[] tokens = model.RandomTokens(9, seed: 14);
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        float[] prefill = ForwardAll(session, tokens);
        session.Reset();
        int v = model.Config.VocabSize;
        for (int p = 0; p < tokens.Length; p++)
            Assert.Equal(prefill.AsSpan(p * v, v).ToArray(), session.Forward(tokens.AsSpan(p, 1)).ToArray());
    }

    [Fact]
    public void HalfPrecisionKvCacheStaysCloseToReference()
    {
        using var model = new TinyModel(new TinyModelSpec());
        int[] tokens = model.RandomTokens(10, seed: 12);
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(tokens);
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2, kvCacheType: KvCacheType.F16);
        float[] logits = ForwardAll(session, tokens);
        int v = model.Config.VocabSize;
        for (int p = 0; p < tokens.Length; p++) AssertMatches(expected[p], logits.AsSpan(p * v, v), $"position {p}", relativeTolerance: 5e-3);
    }

    [Fact]
    public void RejectsPromptsPastTheContextAndBadTokens()
    {
        using var model = new TinyModel(new TinyModelSpec(Context: 64));
        using var session = new InferenceSession(model.Config, model.Weights, contextLength: 16, threads: 1);
        var tooLong = Assert.Throws<ArgumentException>(() => session.Forward(new int[17]));
        Assert.Contains("prompt of 17 tokens exceeds the context of 16", tooLong.Message);

        session.Forward(new int[10]);
        Assert.Throws<ArgumentException>(() => session.Forward(new int[7]));
        Assert.Throws<ArgumentException>(() => session.ForwardAll(new int[7], new float[7 * model.Config.VocabSize]));
        var badToken = Assert.Throws<ArgumentException>(() => session.Forward([1, model.Config.VocabSize]));
        Assert.Contains("token id 300", badToken.Message);
        Assert.Throws<ArgumentException>(() => session.Forward([-1]));
        Assert.Throws<ArgumentException>(() => session.Forward(ReadOnlySpan<int>.Empty));
        Assert.Throws<ArgumentException>(() => session.ForwardAll([1, 2], new float[model.Config.VocabSize]));
        Assert.Equal(10, session.Position); // failed calls change nothing
        session.Forward(new int[6]);
        Assert.Equal(16, session.Position);

        Assert.Throws<ArgumentOutOfRangeException>(() => new InferenceSession(model.Config, model.Weights, contextLength: 65));
    }

    [Fact]
    public void DefaultContextIsTheModelsUpToTheCap()
    {
        using var model = new TinyModel(new TinyModelSpec(Context: 48));
        using var session = new InferenceSession(model.Config, model.Weights, threads: 1);
        Assert.Equal(48, session.ContextLength);
    }

    [Fact]
    public void DecodeDoesNotAllocate()
    {
        using var model = new TinyModel(new TinyModelSpec(GgmlType.F16));
        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        int[] tokens = model.RandomTokens(8, seed: 13);
        session.Forward(tokens.AsSpan(0, 4));
        session.Forward(tokens.AsSpan(4, 1)); // warm-up: per-thread scratch, JIT
        long before = GC.GetAllocatedBytesForCurrentThread();
        session.Forward(tokens.AsSpan(5, 1));
        session.Forward(tokens.AsSpan(6, 2));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1024, $"decode allocated {allocated} bytes");
    }
}
