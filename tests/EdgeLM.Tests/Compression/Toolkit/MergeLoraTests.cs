using System.Text.Json;
using EdgeLM.Compression;
using EdgeLM.Compression.Lora;
using EdgeLM.Formats.Gguf;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Compression.Toolkit;

/// <summary>A PEFT adapter written by the test: A [r, columns] and B [out, r] per module, in torch order.</summary>
internal sealed class TestAdapter
{
    public sealed record Module(string HfModule, int Columns, int Out, float[] A, float[] B);

    public int Rank { get; init; } = 4;
    public double Alpha { get; init; } = 8;
    public bool RsLora { get; init; }
    public List<Module> Modules { get; } = [];
    public double Scale => RsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>Random A (group-constant over <paramref name="repeat"/> columns when above 1) and B.</summary>
    public TestAdapter Add(string hfModule, int columns, int outFeatures, int seed, int repeat = 1)
    {
        var rng = new Random(seed);
        var a = new float[Rank * columns];
        for (int k = 0; k < Rank; k++)
            for (int i = 0; i < columns; i += repeat)
            {
                float v = (float)(rng.NextDouble() * 2 - 1) * 0.1f;
                for (int j = i; j < Math.Min(columns, i + repeat); j++) a[k * columns + j] = v;
            }
        var b = new float[outFeatures * Rank];
        for (int i = 0; i < b.Length; i++) b[i] = (float)(rng.NextDouble() * 2 - 1) * 0.1f;
        Modules.Add(new Module(hfModule, columns, outFeatures, a, b));
        return this;
    }

    public string Write(string dir, IEnumerable<string>? targets = null)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["peft_type"] = "LORA", ["r"] = Rank, ["lora_alpha"] = Alpha, ["use_rslora"] = RsLora, ["fan_in_fan_out"] = false,
            ["target_modules"] = (targets ?? Modules.Select(m => m.HfModule[(m.HfModule.LastIndexOf('.') + 1)..]).Distinct()).ToArray(),
        }));
        var w = new SafetensorsWriter();
        foreach (var m in Modules)
        {
            w.Add($"base_model.model.{m.HfModule}.lora_A.weight", GgmlType.F32, [Rank, m.Columns], Quantize.Rows(GgmlType.F32, m.A, m.Columns));
            w.Add($"base_model.model.{m.HfModule}.lora_B.weight", GgmlType.F32, [m.Out, Rank], Quantize.Rows(GgmlType.F32, m.B, Rank));
        }
        w.Write(Path.Combine(dir, "adapter_model.safetensors"));
        return dir;
    }

    /// <summary>scale·B·A expanded to [out, inFeatures] (pooled A columns repeated over their input groups), in double.</summary>
    public double[] Delta(Module m, int inFeatures)
    {
        int span = inFeatures / m.Columns;
        var d = new double[m.Out * inFeatures];
        for (int o = 0; o < m.Out; o++)
            for (int i = 0; i < inFeatures; i++)
            {
                double s = 0;
                for (int k = 0; k < Rank; k++) s += (double)m.B[o * Rank + k] * m.A[k * m.Columns + i / span];
                d[o * inFeatures + i] = Scale * s;
            }
        return d;
    }
}

public class MergeLoraTests(PruneFixture fixture) : IClassFixture<PruneFixture>
{
    private static readonly int[] Probe = [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100];

    private static string Gguf(string hfModule) => HfTensorNames.ToGguf(hfModule + ".weight")!;

    private static float[] Values(LoadedModel model, string name) => Dequantize.ToFloat(model.Tensors[name]);

    [Theory]
    [InlineData(GgmlType.F32, false, false)]
    [InlineData(GgmlType.F16, true, false)]
    [InlineData(GgmlType.F32, false, true)]
    public void MergesToWPlusScaledBA(GgmlType type, bool toFolder, bool rsLora)
    {
        var toy = new ToyModel { Layers = 2, WeightType = type };
        string input = toy.WriteGguf(fixture.NewPath($"base-{type}.gguf"));
        var adapter = new TestAdapter { Rank = 4, Alpha = 12, RsLora = rsLora }
            .Add("model.layers.0.self_attn.q_proj", 64, 64, 1)
            .Add("model.layers.1.self_attn.v_proj", 64, 32, 2)
            .Add("model.layers.1.mlp.down_proj", 128, 64, 3);
        string dir = adapter.Write(fixture.NewPath("adapter"));
        string output = fixture.NewPath(toFolder ? "merged-hf" : "merged.gguf");

        using var base_ = ModelLoader.Load(input);
        var loaded = LoraAdapter.Load(dir, "qwen2");
        Assert.Equal(rsLora ? 12 / 2.0 : 12 / 4.0, loaded.Scale);
        LoraMerger.Write(base_, loaded, qaLora: false, output, toFolder);

        using var merged = ModelLoader.Load(output);
        Assert.Equal(toFolder ? "hf" : "gguf", merged.Format);
        var targets = adapter.Modules.ToDictionary(m => Gguf(m.HfModule));
        foreach (var (name, tensor) in base_.Tensors)
        {
            var after = merged.Tensors[name];
            Assert.Equal(tensor.Shape, after.Shape);
            if (!targets.TryGetValue(name, out var m))
            {
                // 1-D F32 tensors stay F32 in either format; untouched weights keep their values exactly.
                Assert.Equal(Values(base_, name), Values(merged, name));
                continue;
            }
            Assert.Equal(tensor.Type, after.Type);
            float[] w = Values(base_, name), got = Values(merged, name);
            double[] delta = adapter.Delta(m, tensor.RowLength);
            double relative = type == GgmlType.F32 ? 1e-6 : 1.0 / 2048;
            bool changed = false;
            for (int i = 0; i < w.Length; i++)
            {
                double expected = w[i] + delta[i];
                Assert.True(Math.Abs(got[i] - expected) <= relative * Math.Abs(expected) + 1e-7, $"{name}[{i}]: {got[i]} vs {expected}");
                changed |= got[i] != w[i];
            }
            Assert.True(changed);
        }
    }

    [Theory]
    [InlineData("q4_1", GgmlType.Q4_1)]
    [InlineData("q5_1", GgmlType.Q5_1)]
    public void QaLoraMergeStaysQuantizedAndMovesOnlyTheMins(string fileType, GgmlType quantType)
    {
        var toy = new ToyModel { Layers = 2 };
        string f32 = toy.WriteGguf(fixture.NewPath("qa-base.gguf"));
        string quantized = fixture.NewPath($"qa-{fileType}.gguf");
        using (var m = ModelLoader.Load(f32))
            ModelQuantizer.Quantize(m, quantized, new QuantizeOptions { FileType = LlamaFileTypes.Parse(fileType), Threads = 1 });

        // Pooled A (one column per 32 inputs, as QA-LoRA trains it) and a full-width A constant over each group.
        var adapter = new TestAdapter { Rank = 4, Alpha = 16 }
            .Add("model.layers.0.self_attn.q_proj", 64 / 32, 64, 11)
            .Add("model.layers.1.mlp.down_proj", 128 / 64, 64, 12)
            .Add("model.layers.1.self_attn.o_proj", 64, 64, 13, repeat: 32);
        string dir = adapter.Write(fixture.NewPath("qa-adapter"));
        string output = fixture.NewPath("qa-merged.gguf");
        var r = CliRunner.Run(["merge-lora", "-m", quantized, "--adapter", dir, "-o", output, "--qa-lora"]);
        Assert.True(r.ExitCode == 0, r.ToString());

        using var before = ModelLoader.Load(quantized);
        using var merged = ModelLoader.Load(output);
        var reference = new GgufWriter();
        foreach (var (key, value) in before.Metadata.Entries) reference.Metadata.Set(key, value);
        foreach (var (name, tensor) in before.Tensors)
        {
            var after = merged.Tensors[name];
            Assert.Equal(tensor.Type, after.Type);
            var target = adapter.Modules.SingleOrDefault(m => Gguf(m.HfModule) == name);
            if (target is null)
            {
                Assert.True(tensor.Bytes.SequenceEqual(after.Bytes), name);
                reference.AddTensor(name, tensor.Type, tensor.Shape, tensor.Bytes.ToArray());
                continue;
            }
            Assert.Equal(quantType, tensor.Type);
            float[] w = Dequantize.ToFloat(tensor), got = Dequantize.ToFloat(after);
            double[] delta = adapter.Delta(target, tensor.RowLength);
            var expected = new float[w.Length];
            for (int i = 0; i < w.Length; i++)
            {
                expected[i] = (float)(w[i] + delta[i]);
                // Only the fp16 rounding of the merged min separates the two (half an fp16 ulp of a min below 0.5).
                Assert.True(Math.Abs(got[i] - (w[i] + delta[i])) <= 1.0 / 8192 + 1e-6 * Math.Abs(w[i]), $"{name}[{i}]: {got[i]} vs {w[i] + delta[i]}");
            }
            // The quantized codes and scales are the original ones: every byte but the mins is unchanged.
            int blockBytes = (int)GgmlTypeInfo.BlockBytes(tensor.Type);
            var a = tensor.Bytes; var b = after.Bytes;
            for (int i = 0; i < a.Length; i++)
                if (i % blockBytes is not (2 or 3)) Assert.Equal(a[i], b[i]);
            reference.AddTensor(name, GgmlType.F32, tensor.Shape, Quantize.Rows(GgmlType.F32, expected, tensor.RowLength));
        }
        string referencePath = fixture.NewPath("qa-reference.gguf");
        reference.Write(referencePath);
        float[] mergedLogits = ToyModel.Logits(output, Probe), referenceLogits = ToyModel.Logits(referencePath, Probe), beforeLogits = ToyModel.Logits(quantized, Probe);
        double RelRms(float[] x, float[] y) => Math.Sqrt(x.Zip(y, (p, q) => (double)(p - q) * (p - q)).Sum() / y.Sum(v => (double)v * v));
        // The quantized kernels round activations to 8 bits, so a quantized model is ~1% from its dequantized F32 twin.
        double mergedError = RelRms(mergedLogits, referenceLogits), unmergedError = RelRms(beforeLogits, referenceLogits);
        Assert.True(mergedError < 0.03 && unmergedError > 4 * mergedError, $"merged vs reference {mergedError}, unmerged {unmergedError}");
    }

    [Fact]
    public void QaLoraRejectsAnAdapterThatIsNotGroupConstant()
    {
        string quantized = fixture.NewPath("qa-reject.gguf");
        using (var m = ModelLoader.Load(new ToyModel { Layers = 2 }.WriteGguf(fixture.NewPath("qa-reject-base.gguf"))))
            ModelQuantizer.Quantize(m, quantized, new QuantizeOptions { FileType = LlamaFileType.MostlyQ4_1, Threads = 1 });
        string dir = new TestAdapter().Add("model.layers.0.self_attn.q_proj", 64, 64, 5).Write(fixture.NewPath("plain-adapter"));
        using var model = ModelLoader.Load(quantized);
        var e = Assert.Throws<InvalidDataException>(() => LoraMerger.Validate(model, LoraAdapter.Load(dir, "qwen2"), qaLora: true));
        Assert.Contains("not a QA-LoRA adapter", e.Message);
        e = Assert.Throws<InvalidDataException>(() => LoraMerger.Validate(model, LoraAdapter.Load(dir, "qwen2"), qaLora: false));
        Assert.Contains("merges into F32/F16/BF16", e.Message);
    }

    public static TheoryData<string, string> BadAdapters => new()
    {
        { "shape", "but the base weight 'blk.0.attn_q.weight' is [64, 64]" },
        { "module", "unknown target module 'fc1'" },
        { "untargeted", "is not in target_modules" },
        { "missing", "has no adapter_model.safetensors" },
        { "config", "'r' must be a positive integer" },
    };

    [Theory]
    [MemberData(nameof(BadAdapters))]
    public void BadAdapterFailsInOneLineWithoutOutput(string kind, string message)
    {
        string input = new ToyModel { Layers = 2 }.WriteGguf(fixture.NewPath("bad-base.gguf"));
        string dir = fixture.NewPath("bad-adapter");
        var adapter = new TestAdapter();
        switch (kind)
        {
            case "shape": adapter.Add("model.layers.0.self_attn.q_proj", 48, 64, 1).Write(dir); break;
            case "module": adapter.Add("model.layers.0.mlp.fc1", 64, 64, 1).Write(dir); break;
            case "untargeted": adapter.Add("model.layers.0.self_attn.q_proj", 64, 64, 1).Write(dir, ["v_proj"]); break;
            case "missing":
                adapter.Add("model.layers.0.self_attn.q_proj", 64, 64, 1).Write(dir);
                File.Delete(Path.Combine(dir, "adapter_model.safetensors"));
                break;
            case "config":
                adapter.Add("model.layers.0.self_attn.q_proj", 64, 64, 1).Write(dir);
                File.WriteAllText(Path.Combine(dir, "adapter_config.json"), """{"r": 0, "target_modules": ["q_proj"]}""");
                break;
        }
        string output = fixture.NewPath("bad-merged.gguf");
        var r = CliRunner.Run(["merge-lora", "-m", input, "--adapter", dir, "-o", output]);
        Assert.True(r.ExitCode != 0, r.ToString());
        Assert.Single(r.StdErr.Trim().Split('\n'));
        Assert.Contains(message, r.StdErr);
        Assert.Empty(Directory.GetFiles(fixture.Dir, Path.GetFileName(output) + "*"));
    }
}
