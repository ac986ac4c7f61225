using System.Text.Json;
using EdgeLM.Benchmarking;
using EdgeLM.Cli;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Benchmarking;

/// <summary>A tiny synthetic model on disk for the bench runs.</summary>
public sealed class TinyBenchModel : IDisposable
{
    public string Dir { get; } = TestPaths.NewTempDir();
    public string Path => System.IO.Path.Combine(Dir, "tiny.gguf");

    public TinyBenchModel() =>
        SyntheticModel.WriteGguf(Path, ModelPresets.Get("tiny") with { VocabSize = 512 }, GgmlType.F16, seed: 3, tokenizer: null);

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

[Collection(PeakRssCollection.Name)]
public class BenchRunTests(TinyBenchModel tiny) : IClassFixture<TinyBenchModel>
{
    [Fact]
    public void RunnerTimesEveryRepetitionAndReportsPeakMemory()
    {
        using var model = ModelLoader.Load(tiny.Path);
        var options = new BenchOptions { Repetitions = 2 };
        foreach (var test in BenchTest.Expand([16], [4], [1]))
        {
            var r = BenchRunner.Run(model, test, options);
            Assert.Equal(2, r.SamplesNs.Length);
            Assert.All(r.SamplesNs, ns => Assert.True(ns > 0));
            Assert.All(r.SamplesTokensPerSecond, ts => Assert.True(double.IsFinite(ts) && ts > 0));
            Assert.True(r.MeanTokensPerSecond > 0);
            Assert.True(r.StdDevTokensPerSecond >= 0);
            Assert.True(r.PeakRssBytes >= model.FileBytes, $"peak {r.PeakRssBytes} < file {model.FileBytes}");
            // Process-wide count, so the test host's own threads may add a little; the engine adds nothing per token.
            Assert.True(r.AllocatedBytes < 64 * 1024, $"{test.Name}: {r.AllocatedBytes} managed bytes allocated while timed");
        }
    }

    [Fact]
    public void ModelFactsComeFromTheFile()
    {
        using var model = ModelLoader.Load(tiny.Path);
        var info = BenchModelInfo.From(model);
        Assert.Equal("F16", info.TypeName); // general.file_type = 1
        Assert.Equal(SyntheticModel.ParameterCount(model.Config), info.ParameterCount);
        Assert.Equal(new FileInfo(tiny.Path).Length, info.FileBytes);
        Assert.InRange(info.SizeBytes, 1, info.FileBytes);
        Assert.Equal("F16", BenchModelInfo.DominantTypeName(model.Tensors.Values));
    }

    [Fact]
    public void TestsLongerThanTheContextAreRejected()
    {
        using var model = ModelLoader.Load(tiny.Path);
        var e = Assert.Throws<ArgumentException>(() => BenchRunner.Run(model, new BenchTest(model.Config.ContextLength + 1, 0, 1), new BenchOptions()));
        Assert.Contains("context", e.Message);
    }

    [Fact]
    public void CliRunsEveryCombinationAndWritesJsonAndCsv()
    {
        string json = System.IO.Path.Combine(tiny.Dir, "bench.json"), csv = System.IO.Path.Combine(tiny.Dir, "bench.csv");
        var r = CliRunner.Run(["bench", "-m", tiny.Path, "-p", "8,16", "-n", "0,4", "-t", "1", "-r", "2", "--json", json, "--csv", csv]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("| pp8 |".Replace(" ", ""), r.StdOut.Replace(" ", ""));
        Assert.Contains("tg4", r.StdOut);
        Assert.Contains("±", r.StdOut);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var tests = doc.RootElement.EnumerateArray().ToArray();
        Assert.Equal(["pp8", "pp16", "tg4"], tests.Select(t => t.GetProperty("test").GetString()));
        foreach (var t in tests)
        {
            Assert.Equal(2, t.GetProperty("samples_ns").GetArrayLength());
            Assert.True(t.GetProperty("avg_ts").GetDouble() > 0);
            Assert.True(t.GetProperty("peak_rss_bytes").GetInt64() >= t.GetProperty("model_file_bytes").GetInt64());
            Assert.True(t.GetProperty("managed_allocated_bytes").GetInt64() >= 0);
        }
        var lines = File.ReadAllLines(csv);
        Assert.Equal(4, lines.Length);
        Assert.StartsWith("build_commit,", lines[0]);
        Assert.Empty(Directory.GetFiles(tiny.Dir, "*.tmp-*"));
    }

    [Theory]
    [InlineData("-p", "16,x")]
    [InlineData("-p", "16,,32")]
    [InlineData("-p", "-1")]
    [InlineData("-n", "1.5")]
    [InlineData("-t", "0")]
    [InlineData("-t", "1,two")]
    [InlineData("-r", "0")]
    [InlineData("--kv", "q8_0")]
    public void BadValuesAreUsageErrors(string option, string value)
    {
        var (code, stderr) = RunInProcess(["bench", "-m", tiny.Path, option, value]);
        Assert.Equal(2, code);
        Assert.StartsWith("edgelm bench:", stderr);
        Assert.Contains("usage: edgelm bench", stderr);
    }

    [Fact]
    public void AllSizesZeroOrNoModelAreUsageErrors()
    {
        var (code, stderr) = RunInProcess(["bench", "-m", tiny.Path, "-p", "0", "-n", "0"]);
        Assert.Equal(2, code);
        Assert.Contains("nothing to run", stderr);
        (code, stderr) = RunInProcess(["bench", "-p", "16"]);
        Assert.Equal(2, code);
        Assert.Contains("--model", stderr);
    }

    private static (int Code, string StdErr) RunInProcess(string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stderr.ToString());
    }
}
