using EdgeLM.Formats.Gguf;
using EdgeLM.Tensors;

namespace EdgeLM.Models;

/// <summary>
/// A model ready for inference: its config, its tensors by GGUF name (memory-mapped) and the typed weights.
/// Disposing it unmaps the files, after which no tensor of it may be touched.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    private readonly IDisposable _owner;

    public ModelConfig Config { get; }
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }
    public ModelWeights Weights { get; }
    /// <summary>The GGUF metadata, or for Hugging Face folders the llama.cpp keys synthesized from config.json.</summary>
    public GgufMetadata Metadata { get; }
    public string SourcePath { get; }
    /// <summary>"gguf" or "hf".</summary>
    public string Format { get; }
    /// <summary>Total size of the weight files.</summary>
    public long FileBytes { get; }
    /// <summary>The Hugging Face folder's tokenizer.json, when there is one.</summary>
    public string? TokenizerJsonPath { get; }
    /// <summary>The Hugging Face folder's qwen.tiktoken (Qwen v1), when there is one.</summary>
    public string? TiktokenPath { get; init; }

    /// <summary>Takes ownership of <paramref name="owner"/> (the mapped files or buffers behind the tensors).</summary>
    public LoadedModel(IDisposable owner, ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors,
        GgufMetadata metadata, string sourcePath, string format, long fileBytes, string? tokenizerJsonPath)
    {
        _owner = owner;
        Config = config;
        Tensors = tensors;
        Metadata = metadata;
        SourcePath = sourcePath;
        Format = format;
        FileBytes = fileBytes;
        TokenizerJsonPath = tokenizerJsonPath;
        config.Validate();
        Weights = new ModelWeights(config, tensors);
    }

    public void Dispose()
    {
        Kernels.Quantized.WeightRepacker.Discard(Weights);
        _owner.Dispose();
    }
}
