using EdgeLM.Inference;

namespace EdgeLM.Tests.Inference;

/// <summary>
/// Prompts longer than one 32-key attention block: the blocked attention must give every position bitwise the same
/// logits whatever the batch size (rows per call), the thread count (which changes how query heads are split into
/// work items) and the cache type, and stay close to the float64 reference.
/// </summary>
public class AttentionBlockingTests
{
    private const int PromptLength = 45;

    private static float[] Prefill(TinyModel model, int[] tokens, int threads, int batchSize, KvCacheType kv)
    {
        using var session = new InferenceSession(model.Config, model.Weights, threads: threads, kvCacheType: kv, batchSize: batchSize);
        var logits = new float[tokens.Length * model.Config.VocabSize];
        session.ForwardAll(tokens, logits);
        return logits;
    }

    private static float[] Decode(TinyModel model, int[] tokens, int threads, KvCacheType kv)
    {
        using var session = new InferenceSession(model.Config, model.Weights, threads: threads, kvCacheType: kv);
        int v = model.Config.VocabSize;
        var logits = new float[tokens.Length * v];
        for (int p = 0; p < tokens.Length; p++) session.Forward(tokens.AsSpan(p, 1)).CopyTo(logits.AsSpan(p * v, v));
        return logits;
    }

    [Theory]
    [InlineData(KvCacheType.F32, 2)]
    [InlineData(KvCacheType.F16, 2)]
    [InlineData(KvCacheType.F32, 1)]
    public void LongPromptGivesTheSameBitsAnyWayItIsSplit(KvCacheType kv, int kvHeads)
    {
        using var model = new TinyModel(new TinyModelSpec(Heads: 4, KvHeads: kvHeads));
        int[] tokens = model.RandomTokens(PromptLength, seed: 21);
        float[] whole = Prefill(model, tokens, threads: 2, batchSize: 512, kv);
        Assert.Equal(whole, Prefill(model, tokens, threads: 1, batchSize: 7, kv));
        Assert.Equal(whole, Decode(model, tokens, threads: 3, kv)); // 3 threads, 1 row: query heads split over items
        Assert.Equal(whole, Decode(model, tokens, threads: 1, kv));
    }

    [Fact]
    public void LongPromptStaysCloseToReference()
    {
        using var model = new TinyModel(new TinyModelSpec());
        int[] tokens = model.RandomTokens(PromptLength, seed: 22);
        double[][] expected = new ReferenceModel(model.Config, model.Weights).Logits(tokens);
        float[] logits = Prefill(model, tokens, threads: 2, batchSize: 512, KvCacheType.F32);
        int v = model.Config.VocabSize;
        for (int p = 0; p < tokens.Length; p++)
        {
            double spread = expected[p].Max() - expected[p].Min();
            double maxDiff = 0;
            for (int i = 0; i < v; i++) maxDiff = Math.Max(maxDiff, Math.Abs(expected[p][i] - logits[p * v + i]));
            Assert.True(maxDiff <= 2e-5 * spread, $"position {p}: max |diff| {maxDiff:G3} vs spread {spread:G3}");
        }
    }
}
