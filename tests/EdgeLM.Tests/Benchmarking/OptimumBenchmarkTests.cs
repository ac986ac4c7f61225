using System.Text.Json;
using EdgeLM.Benchmarking;
using EdgeLM.Cli;
using EdgeLM.Evaluation;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;
using Xunit;

namespace EdgeLM.Tests.Benchmarking;

public sealed class OptimumModelFixture : IDisposable
{
    public string Dir { get; } = TestPaths.NewTempDir();
    public string ModelPath => Path.Combine(Dir, "tiny.gguf");

    public OptimumModelFixture()
    {
        var config = ModelPresets.Get("tiny") with { VocabSize = 512, ContextLength = 128, LayerCount = 1 };
        SyntheticModel.WriteGguf(ModelPath, config, GgmlType.F32, seed: 5, tokenizer: null);
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

public sealed class OptimumBenchmarkTests(OptimumModelFixture fixture) : IClassFixture<OptimumModelFixture>
{
    [Fact]
    public void LatencyStatisticsFollowNumpyDefaults()
    {
        // Worked by hand: np.percentile([1,2,3,4], q) with linear interpolation at rank q/100 * 3, np.std with ddof=0.
        var l = OptimumLatency.FromValues([4.0, 1.0, 3.0, 2.0]);
        Assert.Equal(4, l.Count);
        Assert.Equal(10.0, l.Total);
        Assert.Equal(2.5, l.Mean);
        Assert.Equal(2.5, l.P50, 12);
        Assert.Equal(3.7, l.P90, 12);
        Assert.Equal(3.85, l.P95, 12);
        Assert.Equal(3.97, l.P99, 12);
        Assert.Equal(Math.Sqrt(1.25), l.Stdev, 12);
        Assert.Equal(Math.Sqrt(1.25) / 2.5 * 100, l.StdevPercent, 10);
        Assert.Equal(0.0, OptimumLatency.FromValues([0.5]).Stdev);
        Assert.Equal(0.5, OptimumLatency.FromValues([0.5]).P99);

        var d = OptimumLatency.FromValues([3.0, 5.0]).Minus(OptimumLatency.FromValues([1.0, 2.0]));
        Assert.Equal([1.5, 3.5], d.Values);
        Assert.Throws<ArgumentException>(() => OptimumLatency.FromValues([double.NaN]));
    }

    [Fact]
    public void JsonReportHasOptimumLayoutAndConsistentNumbers()
    {
        var options = new OptimumOptions { BatchSize = 1, SequenceLength = 8, NewTokens = 24, Iterations = 3, DurationSeconds = 0, WarmupRuns = 1, Threads = 1 };
        var result = OptimumBenchmark.Run(fixture.ModelPath, () => ModelLoader.Load(fixture.ModelPath), options);
        var ms = new MemoryStream();
        OptimumReport.WriteJson(ms, result);
        using var json = JsonDocument.Parse(ms.ToArray());
        var root = json.RootElement;

        foreach (var target in new[] { "load_model", "prefill", "decode", "per_token", "generate" })
        {
            var lat = root.GetProperty(target).GetProperty("latency");
            Assert.Equal("s", lat.GetProperty("unit").GetString());
            var values = lat.GetProperty("values").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.Equal(values.Length, lat.GetProperty("count").GetInt32());
            Assert.Equal(values.Sum(), lat.GetProperty("total").GetDouble(), 9);
            double mean = values.Average();
            Assert.Equal(mean, lat.GetProperty("mean").GetDouble(), 9);
            double popStd = values.Length > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / values.Length) : 0;
            Assert.Equal(popStd, lat.GetProperty("stdev").GetDouble(), 9);
            foreach (var p in new[] { "p50", "p90", "p95", "p99", "stdev_" }) Assert.Equal(JsonValueKind.Number, lat.GetProperty(p).ValueKind);
            Assert.True(lat.GetProperty("p50").GetDouble() <= lat.GetProperty("p99").GetDouble());
        }

        var prefill = Values(root, "prefill");
        var generate = Values(root, "generate");
        var decode = Values(root, "decode");
        Assert.True(prefill.Length >= 3 && generate.Length >= 3, $"prefill {prefill.Length}, generate {generate.Length} runs");
        Assert.Equal(generate.Length, decode.Length);
        for (int i = 0; i < decode.Length; i++) Assert.Equal(Math.Max(0, generate[i] - prefill.Average()), decode[i], 9);
        // per token: new_tokens - 1 intervals per generate run and sequence
        Assert.Equal(generate.Length * (options.NewTokens - 1), Values(root, "per_token").Length);

        var decodeThroughput = root.GetProperty("decode").GetProperty("throughput");
        Assert.Equal("tokens/s", decodeThroughput.GetProperty("unit").GetString());
        // On a loaded machine a preempted prefill run can make the mean prefill longer than every generate run of this
        // tiny model: decode latency is then 0 (clamped, as above) and its throughput is reported as 0, not infinity.
        double expectedDecode = decode.Average() > 0 ? 1.0 * (options.NewTokens - 1) / decode.Average() : 0;
        Assert.Equal(expectedDecode, decodeThroughput.GetProperty("value").GetDouble(), 6);
        var prefillThroughput = root.GetProperty("prefill").GetProperty("throughput");
        Assert.Equal("samples/s", prefillThroughput.GetProperty("unit").GetString());
        Assert.Equal(1.0 / prefill.Average(), prefillThroughput.GetProperty("value").GetDouble(), 6);
        Assert.Equal(8.0 / prefill.Average(), root.GetProperty("prefill_tokens_per_second").GetDouble(), 6);

        var memory = root.GetProperty("generate").GetProperty("memory");
        Assert.Equal("MB", memory.GetProperty("unit").GetString());
        Assert.True(memory.GetProperty("max_ram").GetDouble() > 1, "a process uses more than 1 MB");
        Assert.Equal("sequential", root.GetProperty("batching").GetString());

        // edgelm score reads the same file.
        var numbers = AicasScore.ReadBench(root, "bench.json");
        Assert.Equal(root.GetProperty("decode_tokens_per_second").GetDouble(), numbers.DecodeTokensPerSecond);
        Assert.True(numbers.PeakMemoryBytes >= memory.GetProperty("max_ram").GetDouble() * 1e6 - 1);
    }

    private static double[] Values(JsonElement root, string target) =>
        root.GetProperty(target).GetProperty("latency").GetProperty("values").EnumerateArray().Select(v => v.GetDouble()).ToArray();

    private sealed class CountingGenerator : IBatchGenerator
    {
        public readonly List<(int Batch, int NewTokens)> Calls = [];
        public string Batching => OptimumBatching.Batched;

        public void Generate(IReadOnlyList<int[]> prompts, int newTokens, Action<int, int>? onToken, CancellationToken cancel)
        {
            Calls.Add((prompts.Count, newTokens));
            for (int step = 0; step < newTokens; step++)
            {
                Thread.Sleep(1);
                for (int s = 0; s < prompts.Count; s++) onToken?.Invoke(s, step);
            }
        }

        public void Dispose() { }
    }

    [Fact]
    public void BatchedEngineSeamGetsEveryCallAndSessionsRunForTheDuration()
    {
        var generator = new CountingGenerator();
        var options = new OptimumOptions { BatchSize = 3, SequenceLength = 5, NewTokens = 6, Iterations = 2, DurationSeconds = 0.15, WarmupRuns = 2, Threads = 1 };
        var result = OptimumBenchmark.Run(fixture.ModelPath, () => ModelLoader.Load(fixture.ModelPath), options, (_, _) => generator);
        Assert.Equal("batched", result.Batching);
        Assert.All(generator.Calls, c => Assert.Equal(3, c.Batch));
        // first generate, two warm-up runs of 2 tokens, then the sessions
        Assert.Equal((3, 6), generator.Calls[0]);
        Assert.Equal((3, 2), generator.Calls[1]);
        Assert.Equal((3, 2), generator.Calls[2]);
        int prefills = generator.Calls.Count(c => c.NewTokens == 1);
        Assert.Equal(prefills, result.Prefill.Latency!.Count);
        Assert.True(prefills >= 2, $"{prefills} prefill runs, asked for at least 2");
        Assert.True(result.Generate.Latency!.Total >= 0.14, $"generate session lasted {result.Generate.Latency.Total} s, asked for 0.15 s");
        Assert.Equal(result.Generate.Latency.Count * 3 * 5, result.PerToken.Latency!.Count);
        Assert.Equal(3.0 * 5 / result.Decode.Latency!.Mean, result.DecodeTokensPerSecond, 6);
    }

    [Fact]
    public void BatchSizeAboveOneDecodesTheSequencesTogetherAndSaysSo()
    {
        var options = new OptimumOptions { BatchSize = 2, SequenceLength = 4, NewTokens = 24, Iterations = 1, DurationSeconds = 0, WarmupRuns = 0, Threads = 1 };
        var result = OptimumBenchmark.Run(fixture.ModelPath, () => ModelLoader.Load(fixture.ModelPath), options);
        Assert.Equal(OptimumBatching.Batched, result.Batching);
        Assert.Equal(result.Generate.Latency!.Count * 2 * 23, result.PerToken.Latency!.Count);
        Assert.True(result.Decode.Latency!.Mean > 0, "23 decode steps take time");
        Assert.Equal(2.0 * 23 / result.Decode.Latency.Mean, result.DecodeTokensPerSecond, 6);

        var one = OptimumBenchmark.Run(fixture.ModelPath, () => ModelLoader.Load(fixture.ModelPath), options with { BatchSize = 1 });
        Assert.Equal(OptimumBatching.Sequential, one.Batching); // a batch of one is a plain session
    }

    [Fact]
    public void SequentialFallbackRunsEverySequenceAndSaysSo()
    {
        var options = new OptimumOptions { BatchSize = 2, SequenceLength = 4, NewTokens = 24, Iterations = 1, DurationSeconds = 0, WarmupRuns = 0, Threads = 1 };
        var result = OptimumBenchmark.Run(fixture.ModelPath, () => ModelLoader.Load(fixture.ModelPath), options, SequentialBatchGenerator.Create);
        Assert.Equal(OptimumBatching.Sequential, result.Batching);
        Assert.Equal(result.Generate.Latency!.Count * 2 * 23, result.PerToken.Latency!.Count);
    }

    [Fact]
    public void BatchedGeneratorPicksTheTokensOfEachSequenceAlone()
    {
        using var model = ModelLoader.Load(fixture.ModelPath);
        var options = new OptimumOptions { BatchSize = 3, SequenceLength = 5, NewTokens = 9, Threads = 2 };
        var prompts = OptimumBenchmark.RandomPrompts(options, model.Config.VocabSize).ToList();
        prompts[1] = prompts[1][..2]; // sequences of different lengths
        using var generator = new BatchedGenerator(model, 3, contextLength: 16, threads: 2);
        var seen = new List<(int Sequence, int Step)>();
        generator.Generate(prompts, options.NewTokens, (s, step) => seen.Add((s, step)), CancellationToken.None);
        generator.Generate(prompts, options.NewTokens, null, CancellationToken.None); // caches are reused, not stale

        Assert.Equal(3 * 9, seen.Count);
        for (int s = 0; s < 3; s++)
        {
            Assert.Equal(Enumerable.Range(0, 9), seen.Where(x => x.Sequence == s).Select(x => x.Step));
            using var session = new EdgeLM.Inference.InferenceSession(model.Config, model.Weights, 16, threads: 1);
            var expected = new List<int>();
            var logits = session.Forward(prompts[s]);
            while (true)
            {
                expected.Add(SequentialBatchGenerator.ArgMax(logits));
                if (expected.Count == 9) break;
                logits = session.Forward(new[] { expected[^1] });
            }
            Assert.Equal(expected, generator.LastTokens[s]);
        }
        Assert.Throws<ArgumentException>(() => generator.Generate([.. prompts, prompts[0]], 2, null, CancellationToken.None));
        Assert.Throws<OperationCanceledException>(() => generator.Generate(prompts, 2, null, new CancellationToken(true)));
        generator.Generate(prompts, 2, null, CancellationToken.None); // a cancelled run leaves the batch empty
    }

    [Fact]
    public void CliWritesTheReportAndRejectsBadOptions()
    {
        string json = Path.Combine(fixture.Dir, "optimum.json");
        var err = new StringWriter();
        int code = Program.Run(["bench", "--scenario", "optimum", "-m", fixture.ModelPath, "--sequence-length", "6", "--new-tokens", "3",
            "--iterations", "2", "--duration", "0", "--warmup-runs", "0", "-t", "1", "--json", json], TextWriter.Null, err);
        Assert.True(code == 0, err.ToString());
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        Assert.Equal(6, doc.RootElement.GetProperty("config").GetProperty("sequence_length").GetInt32());
        Assert.True(doc.RootElement.GetProperty("generate").GetProperty("latency").GetProperty("count").GetInt32() >= 2);
        Assert.Empty(Directory.GetFiles(fixture.Dir, "optimum.json.tmp-*"));

        Assert.Equal(2, Program.Run(["bench", "--scenario", "optimum", "-m", fixture.ModelPath, "--new-tokens", "1"], TextWriter.Null, TextWriter.Null));
        Assert.Equal(2, Program.Run(["bench", "--scenario", "optimum", "-m", fixture.ModelPath, "-p", "8"], TextWriter.Null, TextWriter.Null));
        Assert.Equal(2, Program.Run(["bench", "--scenario", "nope", "-m", fixture.ModelPath], TextWriter.Null, TextWriter.Null));
        Assert.Equal(2, Program.Run(["bench", "-m", fixture.ModelPath, "--batch-size", "2"], TextWriter.Null, TextWriter.Null));
    }
}
