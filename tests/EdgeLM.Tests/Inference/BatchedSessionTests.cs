using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Inference;

public class BatchedSessionTests
{
    /// <summary>What one sequence of a batch went through: its prompt, the logits of every forward it finished, and
    /// the tokens it was fed after each (greedy picks), so the same run can be replayed alone.</summary>
    private sealed class Track(int[] prompt, int decodeSteps)
    {
        public readonly int[] Prompt = prompt;
        public readonly int DecodeSteps = decodeSteps;
        public readonly List<float[]> Logits = [];
        public readonly List<int> Fed = [];
        public BatchSequence? Sequence;
        public bool Done => Logits.Count > DecodeSteps;
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>Runs the tracks in one batch: <paramref name="joinAtStep"/>[i] is the step before which track i
    /// joins, <paramref name="leaveAtStep"/>[i] the step before which it leaves (-1: when done).</summary>
    private static void RunBatch(BatchedSession batch, Track[] tracks, int[] joinAtStep, int[] leaveAtStep)
    {
        for (int step = 0; step < 200; step++)
        {
            for (int i = 0; i < tracks.Length; i++)
            {
                var t = tracks[i];
                if (t.Sequence is { IsRemoved: false } s && (step == leaveAtStep[i] || t.Done)) batch.Remove(s);
                if (step == joinAtStep[i])
                {
                    t.Sequence = batch.Add();
                    Assert.Equal(0, t.Sequence.Position);
                    t.Sequence.Append(t.Prompt);
                }
            }
            if (batch.Sequences.Count == 0 && joinAtStep.All(j => j <= step)) return;
            batch.Step();
            foreach (var t in tracks)
            {
                if (t.Sequence is not { IsRemoved: false, HasLogits: true } s) continue;
                t.Logits.Add(s.Logits.ToArray());
                if (t.Done) continue;
                int next = ArgMax(s.Logits);
                t.Fed.Add(next);
                s.Append([next]);
            }
        }
        Assert.Fail("the batch never finished");
    }

    /// <summary>The same tokens through a fresh single-sequence session: every logits vector must match bitwise.</summary>
    private static void AssertSameAsAlone(TinyModel model, Track track, int threads, string what)
    {
        Assert.NotEmpty(track.Logits);
        using var session = new InferenceSession(model.Config, model.Weights, threads: threads);
        Assert.Equal(track.Logits[0], session.Forward(track.Prompt).ToArray());
        for (int i = 1; i < track.Logits.Count; i++)
            Assert.True(track.Logits[i].AsSpan().SequenceEqual(session.Forward([track.Fed[i - 1]])), $"{what}: logits of decode step {i} differ");
    }

    public static TheoryData<TinyModelSpec> Specs => new()
    {
        new TinyModelSpec(),
        new TinyModelSpec(GgmlType.F16, Ff: 162, Vocab: 301, KvHeads: 1), // feature counts off the vector width
        new TinyModelSpec(GgmlType.Q8_0, Biases: false, Rope: RopeStyle.Interleaved),
        new TinyModelSpec(GgmlType.Q4_0, Tied: true),
        new TinyModelSpec(GgmlType.Q4_K, Hidden: 256, Ff: 256, Layers: 1),
    };

    [Theory]
    [MemberData(nameof(Specs))]
    public void EverySequenceGetsBitwiseItsSingleSessionLogits(TinyModelSpec spec)
    {
        using var model = new TinyModel(spec);
        // Prompts of different lengths, one longer than a step (prefill in chunks next to others' decode steps), one
        // leaving unfinished mid-way and a late one joining on the cache it freed.
        Track[] tracks =
        [
            new(model.RandomTokens(5, seed: 1), decodeSteps: 9),
            new(model.RandomTokens(1, seed: 2), decodeSteps: 20),
            new(model.RandomTokens(13, seed: 3), decodeSteps: 6),
            new(model.RandomTokens(4, seed: 4), decodeSteps: 5),
        ];
        using var batch = new BatchedSession(model.Config, model.Weights, maxSequences: 3, threads: 2, maxTokensPerStep: 6);
        Assert.Equal(6, batch.MaxTokensPerStep);
        RunBatch(batch, tracks, joinAtStep: [0, 0, 2, 5], leaveAtStep: [-1, 4, -1, -1]);

        Assert.Equal(3, batch.CacheCount); // the fourth sequence reused the cache the second one left
        Assert.Equal(4, tracks[1].Logits.Count); // it left after 4 steps
        Assert.True(tracks[0].Done && tracks[2].Done && tracks[3].Done, "every other sequence ran to its end");
        for (int i = 0; i < tracks.Length; i++) AssertSameAsAlone(model, tracks[i], threads: 1, $"{spec} sequence {i}");
    }

    [Fact]
    public void HalfPrecisionCachesAndSharedPoolMatchTheSingleSessionToo()
    {
        using var model = new TinyModel(new TinyModelSpec(GgmlType.F16));
        using var pool = new EdgeLM.Kernels.WorkerPool(3);
        using var batch = new BatchedSession(model.Config, model.Weights, maxSequences: 2, contextLength: 40, pool, KvCacheType.F16);
        Track[] tracks = [new(model.RandomTokens(7, seed: 5), 8), new(model.RandomTokens(3, seed: 6), 8)];
        RunBatch(batch, tracks, joinAtStep: [0, 3], leaveAtStep: [-1, -1]);
        foreach (var t in tracks)
        {
            using var session = new InferenceSession(model.Config, model.Weights, 40, threads: 1, kvCacheType: KvCacheType.F16);
            Assert.Equal(t.Logits[0], session.Forward(t.Prompt).ToArray());
            for (int i = 1; i < t.Logits.Count; i++) Assert.Equal(t.Logits[i], session.Forward([t.Fed[i - 1]]).ToArray());
        }
    }

    [Fact]
    public void StepsShareRowsFairlyAndReportOnlyFinishedQueues()
    {
        using var model = new TinyModel(new TinyModelSpec());
        using var batch = new BatchedSession(model.Config, model.Weights, maxSequences: 2, threads: 1, maxTokensPerStep: 4);
        var longPrompt = batch.Add();
        var decoding = batch.Add();
        longPrompt.Append(model.RandomTokens(10, seed: 1));
        decoding.Append([3]);
        Assert.Equal(11, batch.PendingTokens);
        Assert.Equal(4, batch.Step()); // one row for the short queue, the rest for the long one
        Assert.True(decoding.HasLogits);
        Assert.False(longPrompt.HasLogits);
        Assert.Throws<InvalidOperationException>(() => longPrompt.Logits.Length);
        Assert.Equal(3, longPrompt.Position);
        Assert.Equal(7, longPrompt.PendingCount);
        Assert.Equal(4, batch.Step());
        Assert.False(decoding.HasLogits); // its logits lasted one step
        Assert.Equal(3, batch.Step());
        Assert.True(longPrompt.HasLogits);
        Assert.Equal(10, longPrompt.Position);
        Assert.Equal(0, batch.Step()); // nothing queued
    }

    [Fact]
    public void BadUseFailsWithClearMessagesAndChangesNothing()
    {
        using var model = new TinyModel(new TinyModelSpec(Context: 64));
        using var batch = new BatchedSession(model.Config, model.Weights, maxSequences: 2, contextLength: 16, threads: 1);
        var a = batch.Add();
        batch.Add();
        Assert.Contains("the batch is full (2 sequences)", Assert.Throws<InvalidOperationException>(() => batch.Add()).Message);
        Assert.Contains("prompt of 17 tokens exceeds the context of 16", Assert.Throws<ArgumentException>(() => a.Append(new int[17])).Message);
        Assert.Contains("token id 300", Assert.Throws<ArgumentException>(() => a.Append([1, 300])).Message);
        Assert.Throws<ArgumentException>(() => a.Append([-1]));
        Assert.Throws<ArgumentException>(() => a.Append([]));
        Assert.Equal(0, a.PendingCount);
        a.Append(new int[10]);
        Assert.Throws<ArgumentException>(() => a.Append(new int[7]));
        Assert.Throws<InvalidOperationException>(() => a.Truncate(0)); // queued tokens
        batch.Step();
        a.Append(new int[6]);
        batch.Step();
        Assert.Equal(16, a.Position);
        Assert.Throws<ArgumentException>(() => a.Append([1]));
        a.Truncate(4);
        Assert.Equal(4, a.Position);
        Assert.False(a.HasLogits);

        batch.Remove(a);
        Assert.True(a.IsRemoved);
        Assert.Throws<InvalidOperationException>(() => a.Append([1]));
        batch.Remove(a); // twice is harmless
        using var other = new BatchedSession(model.Config, model.Weights, maxSequences: 1, contextLength: 16, threads: 1);
        Assert.Throws<ArgumentException>(() => other.Remove(batch.Add()));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchedSession(model.Config, model.Weights, maxSequences: 0, threads: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchedSession(model.Config, model.Weights, maxSequences: 1, contextLength: 65, threads: 1));
    }

    [Fact]
    public void IdleCachesCanBeReleasedAndAreRebuiltOnDemand()
    {
        using var model = new TinyModel(new TinyModelSpec());
        using var batch = new BatchedSession(model.Config, model.Weights, maxSequences: 3, threads: 1);
        var a = batch.Add();
        var b = batch.Add();
        batch.Remove(b);
        Assert.Equal(2, batch.CacheCount);
        batch.ReleaseIdleCaches();
        Assert.Equal(1, batch.CacheCount);
        var c = batch.Add();
        c.Append([1, 2]);
        a.Append([1, 2]);
        batch.Step();
        Assert.Equal(a.Logits.ToArray(), c.Logits.ToArray()); // same tokens, fresh caches: same logits
    }

    [Fact]
    public void DecodeStepsDoNotAllocate()
    {
        using var model = new TinyModel(new TinyModelSpec(GgmlType.F16));
        using var batch = new BatchedSession(model.Config, model.Weights, maxSequences: 3, threads: 2);
        var sequences = new[] { batch.Add(), batch.Add(), batch.Add() };
        for (int i = 0; i < 3; i++) sequences[i].Append(model.RandomTokens(3 + i, seed: i));
        batch.Step();
        int[] one = [7];
        void DecodeStep()
        {
            foreach (var s in sequences) s.Append(one);
            batch.Step();
        }
        DecodeStep(); // warm-up: per-thread scratch, JIT
        long before = GC.GetAllocatedBytesForCurrentThread();
        DecodeStep();
        DecodeStep();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1024, $"decode steps allocated {allocated} bytes");
    }
}
