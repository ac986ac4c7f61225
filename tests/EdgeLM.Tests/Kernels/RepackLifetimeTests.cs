using EdgeLM.Compression;
using EdgeLM.Inference;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Kernels;

/// <summary>Packed copies live exactly as long as their model: a process that loads one model after another
/// (the pipeline) must not keep every earlier model's packed weights.</summary>
[Trait("Category", "Kernels")]
public unsafe class RepackLifetimeTests
{
    [Fact]
    public void DisposingTheModelFreesItsPackedMatrices()
    {
        if (!WeightRepacker.Enabled) return; // EDGELM_REPACK=0: nothing is packed
        string dir = TestPaths.NewTempDir();
        try
        {
            string f16 = Path.Combine(dir, "tiny-f16.gguf"), q8 = Path.Combine(dir, "tiny-q8_0.gguf");
            SyntheticModel.WriteGguf(f16, SyntheticFixture.Config, GgmlType.F16, seed: 11, tokenizer: null);
            using (var m = ModelLoader.Load(f16))
                ModelQuantizer.Quantize(m, q8, new QuantizeOptions { FileType = LlamaFileTypes.Parse("q8_0"), Threads = 1 });

            var model = ModelLoader.Load(q8);
            var gate = model.Weights.Layers[0].Gate;
            Assert.Equal(GgmlType.Q8_0, gate.Type);
            float[] logits;
            using (var session = new InferenceSession(model.Config, model.Weights, contextLength: 16, threads: 1))
                logits = session.Forward([1, 2, 3]).ToArray();
            var packed = WeightRepacker.Find(gate);
            Assert.NotNull(packed);
            Assert.True(packed.Data != null);

            model.Dispose();
            Assert.Null(WeightRepacker.Find(gate));
            Assert.True(packed.Data == null);

            // A fresh load packs again and computes the same logits.
            using var again = ModelLoader.Load(q8);
            using var session2 = new InferenceSession(again.Config, again.Weights, contextLength: 16, threads: 1);
            Assert.Equal(logits, session2.Forward([1, 2, 3]).ToArray());
            Assert.NotNull(WeightRepacker.Find(again.Weights.Layers[0].Gate));
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }
}
