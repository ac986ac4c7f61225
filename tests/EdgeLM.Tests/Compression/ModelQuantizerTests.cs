using EdgeLM.Compression;
using EdgeLM.Formats.Gguf;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Compression;

/// <summary>A small synthetic Qwen2 with hidden size 256, so k-quants apply to its matrices, as GGUF and HF folder.</summary>
public sealed class QuantizeFixture : IDisposable
{
    public static ModelConfig Config { get; } = ModelPresets.Get("tiny") with
    {
        VocabSize = 320, HiddenSize = 256, IntermediateSize = 256, HeadCount = 4, KvHeadCount = 2, HeadDim = 64, ContextLength = 256,
    };

    public string Dir { get; } = TestPaths.NewTempDir();
    public string GgufPath => Path.Combine(Dir, "model-f16.gguf");
    public string HfDir => Path.Combine(Dir, "model-hf");

    public QuantizeFixture()
    {
        SyntheticModel.WriteGguf(GgufPath, Config, GgmlType.F16, seed: 11, tokenizer: null);
        SyntheticModel.WriteHuggingFace(HfDir, Config, GgmlType.F16, seed: 11, tokenizerJson: null);
        _q4km = new(() => Quantize(GgufPath, NewPath("q4_k_m.gguf"), "q4_k_m", 2));
    }

    private readonly Lazy<(string, QuantizationReport)> _q4km;

    /// <summary>The GGUF quantized to q4_k_m with 2 threads, made once: the k-quant reference quantizers are the slow part.</summary>
    public (string Path, QuantizationReport Report) Q4KM => _q4km.Value;

    public static (string Path, QuantizationReport Report) Quantize(string input, string output, string type, int threads, params string[] overrides)
    {
        using var model = ModelLoader.Load(input);
        var options = new QuantizeOptions
        {
            FileType = LlamaFileTypes.Parse(type),
            Overrides = overrides.Select(TensorTypeOverride.Parse).ToList(),
            Threads = threads,
        };
        return (output, ModelQuantizer.Quantize(model, output, options));
    }

    public string NewPath(string name) => Path.Combine(Dir, Guid.NewGuid().ToString("N")[..8] + "-" + name);

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

public class ModelQuantizerTests(QuantizeFixture fixture) : IClassFixture<QuantizeFixture>
{
    private static readonly int[] Ids = [1, 17, 300, 42, 42, 319, 0, 99];

    private static float[] Logits(string path)
    {
        using var model = ModelLoader.Load(path);
        using var session = new InferenceSession(model.Config, model.Weights, 32, threads: 2);
        var logits = new float[Ids.Length * model.Config.VocabSize];
        session.ForwardAll(Ids, logits);
        return logits;
    }

    private static double RelativeRms(float[] actual, float[] expected)
    {
        double e = 0, s = 0;
        for (int i = 0; i < expected.Length; i++) { double d = actual[i] - expected[i]; e += d * d; s += (double)expected[i] * expected[i]; }
        return Math.Sqrt(e / s);
    }

    private (string Path, QuantizationReport Report) QuantizeTo(string type, string input, int threads = 2, params string[] overrides) =>
        QuantizeFixture.Quantize(input, fixture.NewPath(type + ".gguf"), type, threads, overrides);

    private string[] FilesBesides(string path) => Directory.GetFiles(fixture.Dir, Path.GetFileName(path) + "*");

    [Fact]
    public void QuantizedModelsRunAndStayCloseToTheFloatModelQ8BeforeQ4()
    {
        var reference = Logits(fixture.GgufPath);
        var q8 = RelativeRms(Logits(QuantizeTo("q8_0", fixture.GgufPath).Path), reference);
        var q4 = RelativeRms(Logits(QuantizeTo("q4_0", fixture.GgufPath).Path), reference);
        var q4km = RelativeRms(Logits(fixture.Q4KM.Path), reference);
        Assert.True(q8 < 0.02, $"q8_0 logits off by {q8:E2}");
        Assert.True(q4 < 0.25 && q4km < 0.25, $"q4_0 {q4:E2}, q4_k_m {q4km:E2}");
        Assert.True(q8 * 3 < q4, $"q8_0 ({q8:E2}) should be much closer than q4_0 ({q4:E2})");
        Assert.True(q4km < q4, $"q4_k_m ({q4km:E2}) should beat q4_0 ({q4:E2})");
    }

    [Fact]
    public void FileHasThePlannedTypesMetadataAndTheReportedSizes()
    {
        var (path, report) = fixture.Q4KM;
        using var file = GgufFile.Open(path);
        using var input = ModelLoader.Load(fixture.GgufPath);

        // The file's tensors are the report's, in llama.cpp order, with the report's sizes.
        Assert.Equal(report.Tensors.Select(t => t.Name), file.TensorInfos.Select(t => t.Name));
        foreach (var t in report.Tensors)
        {
            Assert.Equal(t.Type, file.Tensors[t.Name].Type);
            Assert.Equal(t.BytesOut, file.Tensors[t.Name].ByteLength);
            Assert.Equal(input.Tensors[t.Name].ByteLength, t.BytesIn);
        }
        Assert.Equal(file.Tensors.Values.Sum(t => t.ByteLength), report.TensorBytesOut);
        Assert.Equal(new FileInfo(path).Length, report.OutputFileBytes);
        Assert.True(report.CompressionRatio > 2.5, $"ratio {report.CompressionRatio}");

        // Hidden 256: k-quants apply; the head gets Q6_K, half of attn_v/ffn_down (2 layers: both "more bits") Q6_K.
        Assert.Equal(GgmlType.Q6_K, file.Tensors["output.weight"].Type);
        Assert.Equal(GgmlType.Q4_K, file.Tensors["token_embd.weight"].Type);
        Assert.Equal(GgmlType.Q4_K, file.Tensors["blk.1.ffn_up.weight"].Type);
        Assert.Equal(GgmlType.Q6_K, file.Tensors["blk.1.attn_v.weight"].Type);
        Assert.Equal(GgmlType.F32, file.Tensors["blk.1.attn_norm.weight"].Type);

        Assert.Equal(15L, file.Metadata.GetInteger("general.file_type"));
        Assert.Equal(2L, file.Metadata.GetInteger("general.quantization_version"));
        Assert.Equal(input.Metadata.GetStringArray("tokenizer.ggml.tokens"), file.Metadata.GetStringArray("tokenizer.ggml.tokens"));
        Assert.Equal(input.Metadata.GetString("general.name"), file.Metadata.GetString("general.name"));

        // Relative error of the report matches one computed here from the file's bytes.
        var name = "blk.0.ffn_gate.weight";
        var x = Dequantize.ToFloat(input.Tensors[name]);
        var y = Dequantize.ToFloat(file.Tensors[name]);
        double e = 0, s = 0;
        for (int i = 0; i < x.Length; i++) { e += (double)(y[i] - x[i]) * (y[i] - x[i]); s += (double)x[i] * x[i]; }
        Assert.Equal(Math.Sqrt(e / s), report.Tensors.Single(t => t.Name == name).RelativeRmsError, 9);
        Assert.All(report.Tensors.Where(t => t.Type != t.SourceType), t => Assert.InRange(t.RelativeRmsError, 1e-4, 0.2));
    }

    [Fact]
    public void StreamedParallelOutputIsTheReferenceQuantizationOfEachTensor()
    {
        var (one, _) = QuantizeTo("q4_k_m", fixture.GgufPath, threads: 1);
        var (two, _) = fixture.Q4KM;
        Assert.True(File.ReadAllBytes(one).AsSpan().SequenceEqual(File.ReadAllBytes(two)), "1 and 2 threads wrote different files");

        using var input = ModelLoader.Load(fixture.GgufPath);
        using var file = GgufFile.Open(one);
        foreach (var name in new[] { "token_embd.weight", "blk.1.ffn_down.weight", "output.weight" })
        {
            var t = file.Tensors[name];
            var expected = Quantize.Rows(t.Type, Dequantize.ToFloat(input.Tensors[name]), t.RowLength);
            Assert.True(t.Bytes.SequenceEqual(expected), $"{name} differs from Quantize.Rows");
        }
    }

    [Fact]
    public void OverridesApply()
    {
        var (path, report) = QuantizeTo("q4_k_m", fixture.GgufPath, 2, "token_embd=q8_0", @"ffn_down=q5_k");
        using var file = GgufFile.Open(path);
        Assert.Equal(GgmlType.Q8_0, file.Tensors["token_embd.weight"].Type);
        Assert.Equal(GgmlType.Q5_K, file.Tensors["blk.0.ffn_down.weight"].Type);
        Assert.Equal(GgmlType.Q5_K, file.Tensors["blk.1.ffn_down.weight"].Type);
        Assert.Equal(GgmlType.Q6_K, file.Tensors["output.weight"].Type);
        Assert.Contains("override", report.Tensors.Single(t => t.Name == "token_embd.weight").Note);
    }

    [Fact]
    public void HuggingFaceInputGivesTheSameTensorsAsGguf()
    {
        var (fromGguf, _) = fixture.Q4KM;
        var (fromHf, _) = QuantizeTo("q4_k_m", fixture.HfDir);
        using var a = GgufFile.Open(fromGguf);
        using var b = GgufFile.Open(fromHf);
        Assert.Equal(a.Tensors.Keys.Order(), b.Tensors.Keys.Order());
        foreach (var (name, t) in a.Tensors)
        {
            Assert.Equal(t.Type, b.Tensors[name].Type);
            Assert.True(t.Bytes.SequenceEqual(b.Tensors[name].Bytes), $"{name} differs");
        }
        Assert.Equal(15L, b.Metadata.GetInteger("general.file_type"));
        Assert.True(Logits(fromGguf).AsSpan().SequenceEqual(Logits(fromHf)), "logits differ");
    }

    [Fact]
    public void QuantizedInputIsRefusedUnlessAllowedAndLeavesNoFile()
    {
        var (q8, _) = QuantizeTo("q8_0", fixture.GgufPath);
        string output = fixture.NewPath("requant.gguf");
        using (var model = ModelLoader.Load(q8))
        {
            var options = new QuantizeOptions { FileType = LlamaFileType.MostlyQ4_0 };
            var e = Assert.Throws<InvalidDataException>(() => ModelQuantizer.Quantize(model, output, options));
            Assert.Contains("--allow-requantize", e.Message);
            Assert.Empty(FilesBesides(output));

            var report = ModelQuantizer.Quantize(model, output, options with { AllowRequantize = true });
            Assert.Contains(report.Tensors, t => t.SourceType == GgmlType.Q8_0 && t.Type == GgmlType.Q4_0);
        }
        using var file = GgufFile.Open(output);
        Assert.Equal(GgmlType.Q4_0, file.Tensors["blk.0.attn_q.weight"].Type);
    }

    [Fact]
    public void CancellationLeavesNoFile()
    {
        string output = fixture.NewPath("cancelled.gguf");
        using var model = ModelLoader.Load(fixture.GgufPath);
        using var cts = new CancellationTokenSource();
        var progress = new CancelAfterFirstReport(cts);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            ModelQuantizer.Quantize(model, output, new QuantizeOptions { FileType = LlamaFileType.MostlyQ8_0, Threads = 2 }, progress, cts.Token));
        Assert.True(progress.Reports > 0);
        Assert.Empty(FilesBesides(output));
    }

    private sealed class CancelAfterFirstReport(CancellationTokenSource cts) : IProgress<QuantizeProgress>
    {
        public int Reports;
        public void Report(QuantizeProgress value) { Reports++; cts.Cancel(); }
    }
}
