using System.Text;
using System.Text.Json;

namespace EdgeLM.Evaluation;

/// <summary>Which local file holds one split of a task, and where the Hugging Face datasets-server serves it.</summary>
public sealed record SplitSource(string Split, string FileName, string? LabelsFileName, string HfDataset, string HfConfig, string HfSplit);

/// <summary>
/// A multiple-choice task exactly as lm-evaluation-harness's YAML defines it (lm_eval/tasks/{arc,hellaswag,piqa}):
/// prompt template, choices, gold index, delimiters, splits and version.
/// </summary>
public sealed class EvalTask
{
    public const string TargetDelimiter = " ";
    public const string FewShotDelimiter = "\n\n";
    /// <summary>lm-eval's default fewshot_random_seed.</summary>
    public const int FewShotSeed = 1234;

    public string Name { get; }
    /// <summary>metadata.version of the task YAML.</summary>
    public double Version { get; }
    /// <summary>The split scored (test_split, else validation_split).</summary>
    public SplitSource EvalSplit { get; }
    /// <summary>Where few-shot examples come from (training_split).</summary>
    public SplitSource FewShotSplit { get; }
    private readonly Func<JsonElement, int, EvalDoc> _process;

    private EvalTask(string name, double version, SplitSource eval, SplitSource fewShot, Func<JsonElement, int, EvalDoc> process)
    {
        Name = name;
        Version = version;
        EvalSplit = eval;
        FewShotSplit = fewShot;
        _process = process;
    }

    public static IReadOnlyList<string> Names { get; } = ["arc_challenge", "arc_easy", "hellaswag", "piqa"];

    public static EvalTask Get(string name) => name switch
    {
        "arc_challenge" => Arc(name, "ARC-Challenge"),
        "arc_easy" => Arc(name, "ARC-Easy"),
        "hellaswag" => new EvalTask(name, 1.0,
            new SplitSource("validation", "hellaswag_val.jsonl", null, "Rowan/hellaswag", "default", "validation"),
            new SplitSource("train", "hellaswag_train.jsonl", null, "Rowan/hellaswag", "default", "train"),
            HellaSwagDoc),
        "piqa" => new EvalTask(name, 1.0,
            new SplitSource("validation", "valid.jsonl", "valid-labels.lst", "baber/piqa", "default", "validation"),
            new SplitSource("train", "train.jsonl", "train-labels.lst", "baber/piqa", "default", "train"),
            PiqaDoc),
        _ => throw new ArgumentException($"unknown task '{name}' (known: {string.Join(", ", Names)})"),
    };

    private static EvalTask Arc(string name, string config) => new(name, 1.0,
        new SplitSource("test", "test.jsonl", null, "allenai/ai2_arc", config, "test"),
        new SplitSource("train", "train.jsonl", null, "allenai/ai2_arc", config, "train"),
        ArcDoc);

    /// <summary>process_docs + doc_to_text/doc_to_choice/doc_to_target for one row (with its label for PIQA merged in).</summary>
    public EvalDoc ProcessDoc(JsonElement row, int docId) => _process(row, docId);

    /// <summary>
    /// The context of the request: few-shot examples (already formatted, may be empty) then doc_to_text. The task
    /// YAMLs have no description.
    /// </summary>
    public static string Context(EvalDoc doc, string fewShotPrefix = "") => fewShotPrefix + doc.Query;

    /// <summary>The continuation of choice i: target_delimiter + choice.</summary>
    public static string Continuation(EvalDoc doc, int choice) => TargetDelimiter + doc.Choices[choice];

    /// <summary>How a solved example appears in a few-shot prefix: text, delimiter, gold choice, few-shot delimiter.</summary>
    public static string FewShotExample(EvalDoc doc) => doc.Query + TargetDelimiter + doc.Choices[doc.Gold] + FewShotDelimiter;

    // arc_easy.yaml: doc_to_text "Question: {{question}}\nAnswer:", doc_to_choice "{{choices.text}}",
    // doc_to_target "{{choices.label.index(answerKey)}}".
    private static EvalDoc ArcDoc(JsonElement row, int docId)
    {
        string question = Str(row, "question", docId);
        var choices = Obj(row, "choices", docId);
        var texts = StrArray(choices, "text", docId, "choices.text");
        var labels = StrArray(choices, "label", docId, "choices.label");
        if (texts.Length != labels.Length)
            throw new InvalidDataException($"item {docId}: {texts.Length} choices.text but {labels.Length} choices.label");
        string answerKey = Str(row, "answerKey", docId);
        int gold = Array.IndexOf(labels, answerKey);
        if (gold < 0) throw new InvalidDataException($"item {docId}: answerKey '{answerKey}' is not one of the labels [{string.Join(", ", labels)}]");
        return new EvalDoc(docId, $"Question: {question}\nAnswer:", texts, gold, row.GetRawText());
    }

    // piqa.yaml: doc_to_text "Question: {{goal}}\nAnswer:", doc_to_choice "{{[sol1, sol2]}}", doc_to_target label.
    private static EvalDoc PiqaDoc(JsonElement row, int docId)
    {
        string goal = Str(row, "goal", docId), sol1 = Str(row, "sol1", docId), sol2 = Str(row, "sol2", docId);
        int label = Int(row, "label", docId);
        if (label is < 0 or > 1) throw new InvalidDataException($"item {docId}: PIQA label {label} is not 0 or 1");
        return new EvalDoc(docId, $"Question: {goal}\nAnswer:", [sol1, sol2], label, row.GetRawText());
    }

    // hellaswag.yaml + utils.py process_docs: query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
    // choices = [preprocess(e) for e in endings], gold = int(label).
    private static EvalDoc HellaSwagDoc(JsonElement row, int docId)
    {
        string activity = Str(row, "activity_label", docId), ctxA = Str(row, "ctx_a", docId), ctxB = Str(row, "ctx_b", docId);
        var endings = StrArray(row, "endings", docId, "endings");
        int label = Int(row, "label", docId);
        if (label < 0 || label >= endings.Length)
            throw new InvalidDataException($"item {docId}: label {label} is outside the {endings.Length} endings");
        string ctx = ctxA + " " + PythonText.Capitalize(ctxB);
        string query = PythonText.HellaSwagPreprocess(activity + ": " + ctx);
        var choices = endings.Select(PythonText.HellaSwagPreprocess).ToArray();

        // lm-eval logs the mapped document: the original fields plus the ones process_docs adds.
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer))
        {
            w.WriteStartObject();
            foreach (var p in row.EnumerateObject())
                if (p.Name is not ("query" or "choices" or "gold" or "answer_letter")) p.WriteTo(w);
            w.WriteString("query", query);
            w.WriteStartArray("choices");
            foreach (var c in choices) w.WriteStringValue(c);
            w.WriteEndArray();
            w.WriteNumber("gold", label);
            w.WriteString("answer_letter", ((char)('A' + label)).ToString());
            w.WriteEndObject();
        }
        return new EvalDoc(docId, query, choices, label, Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static string Str(JsonElement row, string field, int docId) =>
        row.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new InvalidDataException($"item {docId}: missing text field '{field}'");

    private static JsonElement Obj(JsonElement row, string field, int docId) =>
        row.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.Object
            ? v
            : throw new InvalidDataException($"item {docId}: missing object field '{field}'");

    private static string[] StrArray(JsonElement row, string field, int docId, string path)
    {
        if (!row.TryGetProperty(field, out var v) || v.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"item {docId}: missing list field '{path}'");
        var result = new string[v.GetArrayLength()];
        int i = 0;
        foreach (var e in v.EnumerateArray())
            result[i++] = e.ValueKind == JsonValueKind.String ? e.GetString()! : throw new InvalidDataException($"item {docId}: '{path}' holds a non-text entry");
        if (result.Length == 0) throw new InvalidDataException($"item {docId}: '{path}' is empty");
        return result;
    }

    /// <summary>Labels are numbers in the original files and digit strings in the Hugging Face copies.</summary>
    private static int Int(JsonElement row, string field, int docId)
    {
        if (row.TryGetProperty(field, out var v))
        {
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n)) return n;
            if (v.ValueKind == JsonValueKind.String && int.TryParse(v.GetString(), System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture, out n)) return n;
        }
        throw new InvalidDataException($"item {docId}: missing whole-number field '{field}'");
    }
}

internal static class JsonOptions
{
    /// <summary>Unescaped non-ASCII, as Python's json.dumps(ensure_ascii=False) writes the logged samples.</summary>
    public static readonly JsonWriterOptions Writer = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static readonly JsonWriterOptions Indented = Writer with { Indented = true };
}
