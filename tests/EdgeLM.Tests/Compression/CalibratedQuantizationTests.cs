using EdgeLM.Compression;
using EdgeLM.Compression.Methods;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Compression;

/// <summary>A hidden-256 Qwen2 (GQA: 4 heads, 2 kv heads) in F32 with a byte-level tokenizer, and a calibration text.</summary>
public sealed class CalibrationFixture : IDisposable
{
    public static ModelConfig Config { get; } = ModelPresets.Get("tiny") with
    {
        VocabSize = 512, HiddenSize = 256, IntermediateSize = 512, HeadCount = 4, KvHeadCount = 2, HeadDim = 64, ContextLength = 256, LayerCount = 2,
    };

    public string Dir { get; } = TestPaths.NewTempDir();
    public string ModelPath => Path.Combine(Dir, "model-f32.gguf");
    public string TextPath => Path.Combine(Dir, "calib.txt");

    public CalibrationFixture()
    {
        SyntheticModel.WriteGguf(ModelPath, Config, GgmlType.F32, seed: 41, tokenizer: BpeTokenizer.CreateByteLevel(512));
        File.WriteAllText(TextPath, string.Concat(Enumerable.Range(0, 40).Select(i => $"The quick brown fox {i} jumps over the lazy dog; calibration line {i * 7}.\n")));
    }

    public string NewPath(string name) => Path.Combine(Dir, Guid.NewGuid().ToString("N")[..8] + "-" + name);

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

public class CalibratedQuantizationTests(CalibrationFixture fixture) : IClassFixture<CalibrationFixture>
{
    private static readonly int[] Ids = [1, 17, 300, 42, 42, 319, 0, 99, 250, 7];

    private static int[] Tokens(int n, int seed) { var r = new Random(seed); return Enumerable.Range(0, n).Select(_ => r.Next(3, 500)).ToArray(); }

    private static float[] Logits(LoadedModel model)
    {
        using var session = new InferenceSession(model.Config, model.Weights, 32, threads: 2);
        var logits = new float[Ids.Length * model.Config.VocabSize];
        session.ForwardAll(Ids, logits);
        return logits;
    }

    private sealed class Recorder : IActivationObserver
    {
        public readonly Dictionary<(int, ActivationSite), List<float[]>> Rows = [];
        public void Observe(int layer, ActivationSite site, ReadOnlySpan<float> rows, int n, int width)
        {
            if (!Rows.TryGetValue((layer, site), out var list)) Rows[(layer, site)] = list = [];
            for (int r = 0; r < n; r++) list.Add(rows.Slice(r * width, width).ToArray());
        }
    }

    [Fact]
    public void ImatrixEqualsTheDirectMeanOfSquaredInputsAndRoundTripsThroughGguf()
    {
        using var model = ModelLoader.Load(fixture.ModelPath);
        var tokens = Tokens(96, 3);
        var calibration = CalibrationSet.Collect(model, tokens, 32, 0, 0, null, 2);
        var matrix = ImportanceMatrix.FromCalibration(model, calibration, "synthetic");
        Assert.Equal(3, calibration.ChunkCount);

        var recorder = new Recorder();
        using (var session = new InferenceSession(model.Config, model.Weights, 32, threads: 2) { Observer = recorder })
            for (int c = 0; c < 3; c++) { session.Reset(); session.Forward(tokens.AsSpan(c * 32, 32)); }

        var expectedSites = new (string Name, ActivationSite Site)[]
        {
            ("attn_q", ActivationSite.AttentionInput), ("attn_k", ActivationSite.AttentionInput), ("attn_v", ActivationSite.AttentionInput),
            ("attn_output", ActivationSite.AttentionOutput), ("ffn_gate", ActivationSite.FfnInput), ("ffn_up", ActivationSite.FfnInput),
            ("ffn_down", ActivationSite.FfnHidden),
        };
        Assert.Equal(2 * expectedSites.Length, matrix.Entries.Count);
        foreach (int layer in new[] { 0, 1 })
            foreach (var (name, site) in expectedSites)
            {
                var rows = recorder.Rows[(layer, site)];
                Assert.Equal(96, rows.Count);
                var actual = matrix.Get($"blk.{layer}.{name}.weight")!;
                Assert.Equal(rows[0].Length, actual.Length);
                for (int c = 0; c < actual.Length; c++)
                {
                    double direct = rows.Sum(r => (double)r[c] * r[c]) / rows.Count;
                    Assert.True(Math.Abs(actual[c] - direct) <= 1e-5 * Math.Max(1, direct), $"{name} column {c}: {actual[c]} vs {direct}");
                }
            }

        string path = fixture.NewPath("imatrix.gguf");
        matrix.Save(path);
        var loaded = ImportanceMatrix.Load(path);
        Assert.Equal(["synthetic"], loaded.Datasets);
        Assert.Equal(3, loaded.ChunkCount);
        Assert.Equal(32, loaded.ChunkSize);
        foreach (var (name, entry) in matrix.Entries)
        {
            Assert.Equal(entry.Count, loaded.Entries[name].Count);
            var a = entry.Mean();
            var b = loaded.Get(name)!;
            for (int c = 0; c < a.Length; c++) Assert.Equal(a[c], b[c], a[c] * 1e-6f + 1e-12f);
        }
    }

    [Fact]
    public void AwqFoldedScalesLeaveTheFloatModelUnchanged()
    {
        using var model = ModelLoader.Load(fixture.ModelPath);
        var calibration = CalibrationSet.Collect(model, Tokens(128, 5), 64, 0, 128, null, 2);
        var plan = ModelQuantizer.Plan(model, new QuantizeOptions { FileType = LlamaFileTypes.Parse("q4_0") });
        var scalings = AwqQuantizer.Plan(model, calibration, plan);
        // Every fold kind must actually be exercised, with scales far from 1.
        foreach (var name in new[] { "attn_norm.weight", "ffn_norm.weight", "ffn_down.weight", "attn_output.weight", "attn_v.bias" })
            Assert.Contains(scalings.Keys, k => k.EndsWith(name, StringComparison.Ordinal));
        Assert.Contains(scalings.Values, s => s.Columns != null && s.Columns.Max() / s.Columns.Min() > 2);

        string output = fixture.NewPath("awq-f32.gguf");
        ModelQuantizer.Quantize(model, output, new QuantizeOptions { FileType = LlamaFileTypes.Parse("f32"), Scalings = scalings, Threads = 2 });
        using var folded = ModelLoader.Load(output);
        var expected = Logits(model);
        var actual = Logits(folded);
        double maxDiff = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        double scale = expected.Max(Math.Abs);
        Assert.True(maxDiff <= 1e-4 * scale, $"logits moved by {maxDiff} (max |logit| {scale})");
        // And the weights did change: the fold is not a no-op.
        var w0 = AwqQuantizer.ReadFloat(model.Tensors["blk.0.ffn_down.weight"]);
        var w1 = AwqQuantizer.ReadFloat(folded.Tensors["blk.0.ffn_down.weight"]);
        Assert.NotEqual(w0, w1);
    }

    [Theory]
    [InlineData("gptq", "q4_0")]
    [InlineData("awq", "q4_k_m")]
    [InlineData("autoround", "q4_0")]
    [InlineData("mse", "q4_0")]
    public void CliQuantizesWithCalibrationToAGgufThatLoadsAndRuns(string method, string type)
    {
        string output = fixture.NewPath(method + ".gguf");
        var r = CliRunner.Run(["quantize", fixture.ModelPath, output, "--type", type, "--method", method, "--calib", fixture.TextPath,
            "--calib-tokens", "256", "--calib-ctx", "128", "--autoround-steps", "20", "-t", "2"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("compression:", r.StdOut);
        using var reference = ModelLoader.Load(fixture.ModelPath);
        using var quantized = ModelLoader.Load(output);
        Assert.Equal(reference.Config.LayerCount, quantized.Config.LayerCount);
        Assert.Contains(quantized.Tensors.Values, t => t.Type is GgmlType.Q4_0 or GgmlType.Q4_K);
        var expected = Logits(reference);
        var actual = Logits(quantized);
        Assert.All(actual, v => Assert.True(float.IsFinite(v)));
        double e = 0, s = 0;
        for (int i = 0; i < expected.Length; i++) { e += Math.Pow(actual[i] - expected[i], 2); s += Math.Pow(expected[i], 2); }
        Assert.True(Math.Sqrt(e / s) < 0.5, $"relative logit error {Math.Sqrt(e / s)}");
    }

    [Fact]
    public void ImatrixCommandWritesAFileThatQuantizeReuses()
    {
        string imatrix = fixture.NewPath("imatrix.gguf"), output = fixture.NewPath("mse.gguf");
        var r = CliRunner.Run(["imatrix", "-m", fixture.ModelPath, "-f", fixture.TextPath, "-o", imatrix, "--ctx", "128", "--chunks", "2", "-t", "2"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var matrix = ImportanceMatrix.Load(imatrix);
        Assert.Equal(2, matrix.ChunkCount);
        Assert.Equal(256, matrix.Entries["blk.0.attn_q.weight"].Count);
        var q = CliRunner.Run(["quantize", fixture.ModelPath, output, "--type", "q4_0", "--method", "mse", "--imatrix", imatrix, "-t", "2"]);
        Assert.True(q.ExitCode == 0, q.ToString());
        Assert.True(File.Exists(output));
    }

    private void AssertCleanFailure(CliResult r, string expected, string output)
    {
        Assert.True(r.ExitCode != 0, r.ToString());
        Assert.Single(r.StdErr.Trim().Split('\n'));
        Assert.Contains(expected, r.StdErr);
        Assert.DoesNotContain("   at ", r.StdErr);
        Assert.Empty(Directory.GetFiles(fixture.Dir, Path.GetFileName(output) + "*"));
    }

    [Fact]
    public void BadCalibrationInputFailsWithOneLineAndNoOutput()
    {
        string output = fixture.NewPath("bad.gguf");
        AssertCleanFailure(CliRunner.Run(["quantize", fixture.ModelPath, output, "--type", "q4_0", "--method", "gptq"]), "--calib", output);
        AssertCleanFailure(CliRunner.Run(["quantize", fixture.ModelPath, output, "--type", "q4_0", "--method", "awq", "--calib", fixture.NewPath("missing.txt")]),
            "calibration file not found", output);
        AssertCleanFailure(CliRunner.Run(["quantize", fixture.ModelPath, output, "--type", "q4_0", "--method", "mse", "--imatrix", fixture.NewPath("missing.gguf")]),
            "imatrix file not found", output);
        AssertCleanFailure(CliRunner.Run(["imatrix", "-m", fixture.ModelPath, "-f", fixture.NewPath("missing.txt"), "-o", output]),
            "calibration file not found", output);
        AssertCleanFailure(CliRunner.Run(["quantize", fixture.ModelPath, output, "--type", "q4_0", "--method", "gptq", "--imatrix", fixture.ModelPath]),
            "--calib", output);
    }
}
