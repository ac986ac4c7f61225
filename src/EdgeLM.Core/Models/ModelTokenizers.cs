using EdgeLM.Tokenization;

namespace EdgeLM.Models;

public static class ModelTokenizers
{
    /// <summary>
    /// The tokenizer that belongs to a model: an explicit tokenizer file (tokenizer.json or qwen.tiktoken) wins,
    /// then the one embedded in GGUF metadata, then the tokenizer.json or qwen.tiktoken of a Hugging Face folder.
    /// Null when the model carries none.
    /// </summary>
    public static BpeTokenizer? Load(LoadedModel model, string? tokenizerJsonOverride = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (tokenizerJsonOverride != null) return BpeTokenizer.FromFile(tokenizerJsonOverride);
        if (model.Metadata.Contains("tokenizer.ggml.tokens")) return BpeTokenizer.FromGgufMetadata(model.Metadata);
        if (model.TokenizerJsonPath != null) return BpeTokenizer.FromTokenizerJson(model.TokenizerJsonPath);
        if (model.TiktokenPath != null) return BpeTokenizer.FromTiktoken(model.TiktokenPath);
        return null;
    }

    public static BpeTokenizer Require(LoadedModel model, string? tokenizerJsonOverride = null) =>
        Load(model, tokenizerJsonOverride)
        ?? throw new InvalidDataException($"{model.SourcePath} has no tokenizer; pass --tokenizer tokenizer.json");
}
