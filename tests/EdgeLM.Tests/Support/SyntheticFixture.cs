using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Support;

/// <summary>
/// One small synthetic Qwen2 model written as GGUF and as a Hugging Face folder with the same weights, shared by the
/// test classes that need a model on disk. A 512-token vocabulary with the byte-level tokenizer keeps it tiny.
/// </summary>
public sealed class SyntheticFixture : IDisposable
{
    public static ModelConfig Config { get; } = ModelPresets.Get("tiny") with { VocabSize = 512, ContextLength = 256 };

    public string Dir { get; } = TestPaths.NewTempDir();
    public string GgufPath => Path.Combine(Dir, "tiny.gguf");
    public string HfDir => Path.Combine(Dir, "tiny-hf");

    public SyntheticFixture()
    {
        SyntheticModel.WriteGguf(GgufPath, Config, GgmlType.F16, seed: 7, tokenizer: null);
        SyntheticModel.WriteHuggingFace(HfDir, Config, GgmlType.F16, seed: 7, tokenizerJson: null);
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}
