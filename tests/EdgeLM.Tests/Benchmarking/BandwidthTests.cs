using System.Text.Json;
using EdgeLM.Benchmarking;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tests.Inference;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Benchmarking;

public class DecodeTrafficTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryWeightOnceAndOneEmbeddingRow(bool tied)
    {
        using var tiny = new TinyModel(new TinyModelSpec(WeightType: GgmlType.Q8_0, Tied: tied, Hidden: 64, Ff: 160, Vocab: 320));
        var w = tiny.Weights;
        long all = w.TokenEmbedding.ByteLength + w.OutputNorm.ByteLength + (tied ? 0 : w.Output.ByteLength);
        foreach (var l in w.Layers)
            all += new[] { l.AttnNorm, l.Wq, l.Wk, l.Wv, l.Wo, l.Bq!, l.Bk!, l.Bv!, l.FfnNorm, l.Gate, l.Up, l.Down }.Sum(t => t.ByteLength);
        // Untied: the embedding is read one row per token, not whole; tied: the whole of it is the head.
        long expected = tied ? all : all - w.TokenEmbedding.ByteLength + w.TokenEmbedding.RowStride;
        Assert.Equal(expected, DecodeTraffic.WeightBytesPerToken(w));
    }

    [Fact]
    public void KvReadsGrowWithThePosition()
    {
        using var tiny = new TinyModel(new TinyModelSpec()); // 2 layers, kv dim 2 x 16
        var config = tiny.Config;
        long perPosition = 2L * 2 * 32 * 4;
        Assert.Equal(perPosition, DecodeTraffic.KvBytesPerToken(config, KvCacheType.F32, 1));
        Assert.Equal(perPosition * 2, DecodeTraffic.KvBytesPerToken(config, KvCacheType.F32, 3)); // (1 + 2 + 3) / 3 positions
        Assert.Equal(perPosition, DecodeTraffic.KvBytesPerToken(config, KvCacheType.F16, 3));
        Assert.Equal(0, DecodeTraffic.KvBytesPerToken(config, KvCacheType.F32, 0));
    }
}

[Trait("Category", "Kernels")]
public unsafe class MemoryBandwidthTests
{
    [Fact]
    public void VectorSumMatchesScalarSum()
    {
        using var buffer = new NativeBuffer(128 * 37);
        var values = (ulong*)buffer.Pointer;
        var random = new Random(5);
        ulong expected = 0;
        for (int i = 0; i < 16 * 37; i++) expected += values[i] = (ulong)random.NextInt64();
        Assert.Equal(expected, MemoryBandwidth.Sum(buffer.Pointer, 128 * 37));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void MeasuresAPositiveRate(int threads)
    {
        var rate = MemoryBandwidth.MeasureRead(threads, 8L << 20, passes: 4);
        Assert.True(double.IsFinite(rate.Median) && rate.Median > 1e8, $"{rate} bytes/s");
        Assert.InRange(rate.Best, rate.Median, double.MaxValue);
    }

    [Fact]
    public void BadArgumentsThrow()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryBandwidth.MeasureRead(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryBandwidth.MeasureRead(1, 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryBandwidth.MeasureRead(1, 1 << 20, 0));
    }
}

public class BandwidthReportTests
{
    private static BenchResult Result(int prompt, int gen, long bytes, double bandwidth) => new()
    {
        Test = new BenchTest(prompt, gen, 2), KvCacheType = KvCacheType.F32, SamplesNs = [1_000_000_000, 1_000_000_000],
        PeakRssBytes = 1, PeakRssIsPerTest = true, StartedAt = DateTimeOffset.UnixEpoch,
        DecodeBytesPerToken = bytes, ReadBandwidthBytesPerSecond = bandwidth,
    };

    [Fact]
    public void TgLineSaysHowCloseDecodeComesToTheBandwidth()
    {
        var r = Result(0, 50, 400_000_000, 25e9); // 50 t/s x 400 MB = 20 GB/s
        Assert.Equal(0.8, r.BandwidthUse, 12);
        Assert.Equal("tg50 t=2: 400.0 MB read per token (weights and KV cache) x 50.0 t/s = 20.0 GB/s, 80% of the 25.0 GB/s measured read bandwidth",
            BenchReport.BandwidthLine(r));
        Assert.EndsWith("= 20.0 GB/s", BenchReport.BandwidthLine(Result(0, 50, 400_000_000, 0)));
        Assert.Equal(0, Result(0, 50, 400_000_000, 0).BandwidthUse);
        Assert.Null(BenchReport.BandwidthLine(Result(64, 0, 0, 25e9)));
    }
}

[Collection(PeakRssCollection.Name)]
public class BandwidthCliTests(TinyBenchModel tiny) : IClassFixture<TinyBenchModel>
{
    [Fact]
    public void BenchMeasuresTheBandwidthAndReportsItPerTgTest()
    {
        string json = Path.Combine(tiny.Dir, "bw.json");
        var r = CliRunner.Run(["bench", "-m", tiny.Path, "-p", "8", "-n", "4", "-t", "1", "-r", "1", "--bandwidth", "--json", json]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Matches(@"memory read bandwidth \(512 MiB, median of 10 passes, best in brackets\): 1 thread [0-9.]+ GB/s \([0-9.]+\)", r.StdErr);
        Assert.Matches(@"tg4 t=1: [0-9.]+ MB read per token \(weights and KV cache\) x [0-9.]+ t/s = [0-9.]+ GB/s, [0-9]+% of the [0-9.]+ GB/s", r.StdOut);
        Assert.DoesNotContain("pp8 t=1:", r.StdOut);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var tests = doc.RootElement.EnumerateArray().ToArray();
        Assert.Equal(0, tests[0].GetProperty("decode_bytes_per_token").GetInt64());
        using var model = ModelLoader.Load(tiny.Path);
        Assert.Equal(DecodeTraffic.WeightBytesPerToken(model.Weights) + DecodeTraffic.KvBytesPerToken(model.Config, KvCacheType.F32, 4),
            tests[1].GetProperty("decode_bytes_per_token").GetInt64());
        Assert.True(tests[1].GetProperty("read_bandwidth_bytes_per_s").GetDouble() > 1e8);
        Assert.True(tests[1].GetProperty("bandwidth_use").GetDouble() > 0);
    }

    [Fact]
    public void WithoutATgTestNothingIsMeasured()
    {
        var r = CliRunner.Run(["bench", "-m", tiny.Path, "-p", "8", "-n", "0", "-t", "1", "-r", "1", "--bandwidth"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("--bandwidth: no tg test", r.StdErr);
        Assert.DoesNotContain("memory read bandwidth", r.StdErr);
    }

    [Fact]
    public void BandwidthBelongsToTheLlamaScenario()
    {
        var r = CliRunner.Run(["bench", "--scenario", "optimum", "-m", tiny.Path, "--bandwidth"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--bandwidth belongs to the llama scenario", r.StdErr);
    }
}
