using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using System.Xml;
using System.Xml.Linq;
using EdgeLM.Benchmarking;
using EdgeLM.Cli;
using EdgeLM.Compression;
using EdgeLM.Pipeline;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Evaluation;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;
using Xunit;

namespace EdgeLM.Tests.Pipeline;

/// <summary>One pipeline run on a tiny random model (baseline + three quantized candidates, 2 PIQA items), shared by the tests.</summary>
public sealed class PipelineRunFixture : IDisposable
{
    public string Dir { get; } = TestPaths.NewTempDir();
    public string ModelPath => Path.Combine(Dir, "tiny.gguf");
    public string OutputDir => Path.Combine(Dir, "report");
    public PipelineResult Result { get; }
    public List<string> Log { get; } = [];

    public PipelineRunFixture()
    {
        // 256-wide rows so that q4_k_m really uses k-quant blocks
        var config = ModelPresets.Get("tiny") with { VocabSize = 512, ContextLength = 256, LayerCount = 4, HiddenSize = 256, IntermediateSize = 512, HeadCount = 4, KvHeadCount = 2, HeadDim = 64 };
        SyntheticModel.WriteGguf(ModelPath, config, GgmlType.F16, seed: 11, tokenizer: BpeTokenizer.CreateByteLevel(512));
        Result = PipelineRunner.Run(Options(this), Log.Add);
    }

    public static PipelineOptions Options(PipelineRunFixture f, string? output = null) => new()
    {
        BaseModelPath = f.ModelPath,
        OutputDir = output ?? f.OutputDir,
        WorkDir = Path.Combine(f.Dir, "work"),
        Tasks = ["piqa", "hellaswag"],
        Limit = 2,
        DataDirs = [ReferenceParityTests.DatasetsDir],
        Threads = 1,
        EvalContext = 256,
        // Enough decode steps that generate - prefill stays well above timing noise on a loaded machine.
        Bench = new OptimumOptions { SequenceLength = 8, NewTokens = 24, Iterations = 2, DurationSeconds = 0, WarmupRuns = 0, Threads = 1 },
    };

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

// Serial: the candidates' decode speed is generate time minus prefill time (as optimum-benchmark computes it), and with
// the rest of the suite running on the same 2 cores a noisy prefill measurement once exceeded it (decode 0 tokens/s).
[Collection(SerialCollection.Name)]
public sealed class PipelineTests(PipelineRunFixture fixture) : IClassFixture<PipelineRunFixture>
{
    private static readonly string[] Names = ["baseline", "q8_0", "q4_k_m", "q4_0", "pruned1+q4_k_m"];

    [Fact]
    public void ReportJsonHasEveryCandidateWithBenchAccuracyAndScore()
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(fixture.OutputDir, "report.json")));
        var candidates = json.RootElement.GetProperty("candidates").EnumerateArray().ToArray();
        Assert.Equal(Names, candidates.Select(c => c.GetProperty("name").GetString()));
        Assert.Equal("baseline", candidates[0].GetProperty("kind").GetString());
        Assert.Equal(JsonValueKind.Null, candidates[0].GetProperty("score").ValueKind);

        Assert.Equal("pruned", candidates[4].GetProperty("kind").GetString());
        // One of four blocks removed: fewer parameters than the baseline.
        Assert.True(candidates[4].GetProperty("parameters").GetInt64() < candidates[0].GetProperty("parameters").GetInt64());

        var bits = candidates.Select(c => c.GetProperty("bits_per_weight").GetDouble()).ToArray();
        Assert.True(bits[0] > bits[1] && bits[1] > bits[3], $"bits/weight {string.Join(", ", bits)}: f16 > q8_0 > q4_0");
        foreach (var c in candidates)
        {
            var bench = c.GetProperty("bench");
            Assert.True(bench.GetProperty("prefill_tokens_per_second").GetDouble() > 0);
            Assert.True(bench.GetProperty("decode_tokens_per_second").GetDouble() > 0);
            Assert.True(bench.GetProperty("peak_memory_bytes").GetDouble() > 0);
            Assert.True(bench.GetProperty("generate_count").GetInt32() >= 2);
            Assert.True(File.Exists(c.GetProperty("model").GetString()));

            var piqa = c.GetProperty("tasks").GetProperty("piqa");
            Assert.Equal(2, piqa.GetProperty("n").GetInt32());
            Assert.Contains(piqa.GetProperty("acc").GetDouble(), new[] { 0.0, 0.5, 1.0 });
            Assert.Equal("accuracy: skipped, no data", c.GetProperty("tasks").GetProperty("hellaswag").GetProperty("skipped").GetString());
            // the average covers only the evaluated task
            Assert.Equal(piqa.GetProperty("acc").GetDouble(), c.GetProperty("average_accuracy").GetDouble());
        }
        foreach (var c in candidates.Skip(1))
        {
            var score = c.GetProperty("score");
            var n = score.GetProperty("normalized");
            double total = 0.4 * n.GetProperty("accuracy").GetDouble() + 0.2 * n.GetProperty("memory").GetDouble()
                           + 0.2 * n.GetProperty("prefill").GetDouble() + 0.2 * n.GetProperty("decode").GetDouble();
            Assert.Equal(total, score.GetProperty("total").GetDouble(), 9);
        }
        var notes = json.RootElement.GetProperty("notes").EnumerateArray().Select(x => x.GetString()!).ToArray();
        Assert.DoesNotContain(notes, n => n.StartsWith("pruned variant: skipped", StringComparison.Ordinal));
        Assert.Contains(notes, n => n.StartsWith("hellaswag: accuracy: skipped, no data", StringComparison.Ordinal));
        Assert.Contains(fixture.Log, l => l.StartsWith("    removing blocks ", StringComparison.Ordinal));
        Assert.True(json.RootElement.GetProperty("score_config").GetProperty("p_max").GetDouble() >
                    json.RootElement.GetProperty("score_config").GetProperty("p_min").GetDouble());
    }

    [Fact]
    public void ReportHtmlIsWellFormedWithTwoChartsAndAMarkerPerCandidate()
    {
        var doc = LoadXhtml(Path.Combine(fixture.OutputDir, "report.html"));
        XNamespace h = "http://www.w3.org/1999/xhtml", svg = "http://www.w3.org/2000/svg";
        Assert.Empty(doc.Descendants(h + "script"));
        Assert.DoesNotContain(doc.Descendants().Attributes(), a => a.Value.Contains("http://", StringComparison.Ordinal) && a.Name.LocalName is "src" or "href");
        var charts = doc.Descendants(svg + "svg").ToArray();
        Assert.Equal(2, charts.Length);
        foreach (var chart in charts)
        {
            var markers = chart.Descendants(svg + "circle").Where(c => (string?)c.Attribute("class") == "marker").ToArray();
            Assert.Equal(Names, markers.Select(m => (string?)m.Attribute("data-candidate")));
            Assert.True(chart.Descendants(svg + "line").Count() >= 6, "axes and ticks");
            Assert.Contains(chart.Descendants(svg + "text"), t => t.Value == "average accuracy (acc)");
        }
        string text = string.Concat(doc.Descendants(h + "body").Single().DescendantNodes().OfType<XText>().Select(t => t.Value));
        Assert.Contains("accuracy: skipped, no data", text);
        foreach (var name in Names) Assert.Contains(name, text);
        // every table row has as many cells (counting colspan) as its header
        foreach (var table in doc.Descendants(h + "table"))
        {
            var widths = table.Descendants(h + "tr").Select(tr => tr.Elements().Sum(c => (int?)c.Attribute("colspan") ?? 1)).Distinct().ToArray();
            Assert.Single(widths);
        }
    }

    [Fact]
    public void ChartAxisRangesAreRoundAndContainTheData()
    {
        var (lo, hi, step) = PipelineHtml.NiceRange(21.8, 45.0);
        Assert.True(lo <= 21.8 && hi >= 45.0);
        Assert.Equal(0, Math.IEEERemainder(lo, step), 9);
        Assert.Equal(0, Math.IEEERemainder(hi, step), 9);
        var flat = PipelineHtml.NiceRange(0.5, 0.5);
        Assert.True(flat.Min < 0.5 && flat.Max > 0.5);
    }

    [Fact]
    public void CancellingLeavesNoReport()
    {
        string output = Path.Combine(fixture.Dir, "cancelled");
        using var cancel = new CancellationTokenSource();
        var options = PipelineRunFixture.Options(fixture, output) with { QuantTypes = [LlamaFileType.MostlyQ8_0] };
        Assert.ThrowsAny<OperationCanceledException>(() => PipelineRunner.Run(options, line =>
        {
            if (line.Contains("piqa: acc", StringComparison.Ordinal)) cancel.Cancel(); // Ctrl+C after the first evaluation
        }, cancel.Token));
        Assert.False(File.Exists(Path.Combine(output, "report.json")));
        Assert.False(File.Exists(Path.Combine(output, "report.html")));
        Assert.Empty(Directory.GetFiles(output, "*.tmp-*"));
    }

    [Fact]
    public void CliRejectsBadOptionsBeforeAnyWork()
    {
        var err = new StringWriter();
        Assert.Equal(2, Program.Run(["pipeline", "-m", fixture.ModelPath, "--types", "q9_9"], TextWriter.Null, err));
        Assert.Equal(2, Program.Run(["pipeline", "-m", fixture.ModelPath, "--tasks", "mmlu"], TextWriter.Null, TextWriter.Null));
        Assert.Equal(2, Program.Run(["pipeline", "-m", fixture.ModelPath, "--limit", "0"], TextWriter.Null, TextWriter.Null));
        Assert.Equal(2, Program.Run(["pipeline", "-m", fixture.ModelPath, "--p-max", "0.3", "--p-min", "0.4"], TextWriter.Null, TextWriter.Null));
    }

    [Fact]
    public void ReportRendersInHeadlessChromium()
    {
        const string chromium = "/usr/bin/chromium";
        if (!File.Exists(chromium))
        {
            Assert.True(Environment.GetEnvironmentVariable("CI") != "true",
                "chromium is not installed at /usr/bin/chromium; scripts/test.sh installs it (apt-get install chromium) so the report render is tested");
            return; // local run without chromium: nothing to render with
        }
        string html = Path.Combine(fixture.OutputDir, "report.html");
        string png = Path.Combine(fixture.Dir, "report.png");
        string url = new Uri(html).AbsoluteUri;
        RunChromium(chromium, [$"--screenshot={png}", "--window-size=1200,1600", url]);
        Assert.True(File.Exists(png), "chromium wrote no screenshot");
        var bytes = File.ReadAllBytes(png);
        Assert.True(bytes.Length > 20_000, $"screenshot is only {bytes.Length} bytes: a blank page?");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        Assert.Equal(1200, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16, 4)));
        Assert.Equal(1600, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20, 4)));

        string dom = RunChromium(chromium, ["--dump-dom", url]);
        Assert.Equal(2, CountOccurrences(dom, "<svg"));
        Assert.Equal(2 * Names.Length, CountOccurrences(dom, "class=\"marker\""));
        Assert.Contains("accuracy: skipped, no data", dom);
    }

    private static string RunChromium(string chromium, string[] args)
    {
        string profile = TestPaths.NewTempDir();
        var psi = new ProcessStartInfo(chromium)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", $"--user-data-dir={profile}" }) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(90_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("chromium did not finish in 90 s");
        }
        try { Directory.Delete(profile, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        Assert.True(p.ExitCode == 0, $"chromium exited with {p.ExitCode}: {stderr.Result}");
        return stdout.Result;
    }

    private static int CountOccurrences(string text, string what)
    {
        int count = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    internal static XDocument LoadXhtml(string path)
    {
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Ignore, XmlResolver = null };
        using var reader = XmlReader.Create(path, settings);
        return XDocument.Load(reader);
    }
}
