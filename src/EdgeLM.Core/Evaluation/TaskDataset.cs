using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EdgeLM.Evaluation;

/// <summary>
/// Reads a task split from local files in the original distributions' layout: DIR/&lt;task&gt;/&lt;file&gt;.jsonl, with
/// PIQA's labels in a separate .lst file (one 0/1 per line, as the PIQA authors ship them).
/// </summary>
public static class TaskDataset
{
    /// <summary>Bigger than any of these datasets' rows; stops a corrupt file from exhausting memory.</summary>
    private const int MaxLineChars = 1 << 20;

    public static string PathOf(string dataDir, EvalTask task, SplitSource split) => Path.Combine(dataDir, task.Name, split.FileName);

    public static string? LabelsPathOf(string dataDir, EvalTask task, SplitSource split) =>
        split.LabelsFileName is null ? null : Path.Combine(dataDir, task.Name, split.LabelsFileName);

    public static bool Exists(string dataDir, EvalTask task, SplitSource split) =>
        File.Exists(PathOf(dataDir, task, split)) && (LabelsPathOf(dataDir, task, split) is not { } l || File.Exists(l));

    public static List<EvalDoc> Load(string dataDir, EvalTask task, SplitSource split)
    {
        string path = PathOf(dataDir, task, split);
        if (!File.Exists(path)) throw new FileNotFoundException($"{task.Name}: data file not found: {path} (pass --data DIR or --download)", path);
        string? labelsPath = LabelsPathOf(dataDir, task, split);
        int[]? labels = null;
        if (labelsPath != null)
        {
            if (!File.Exists(labelsPath)) throw new FileNotFoundException($"{task.Name}: labels file not found: {labelsPath}", labelsPath);
            labels = ReadLabels(labelsPath);
        }

        var docs = new List<EvalDoc>();
        int lineNumber = 0;
        using var reader = new StreamReader(path, Encoding.UTF8);
        while (ReadLine(reader, path, lineNumber + 1) is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument json;
            try { json = JsonDocument.Parse(line); }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{lineNumber}: not valid JSON ({e.Message})"); }
            using (json)
            {
                if (json.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}:{lineNumber}: a line must hold one JSON object");
                var row = json.RootElement;
                if (labels != null)
                {
                    if (docs.Count >= labels.Length)
                        throw new InvalidDataException($"{labelsPath} has {labels.Length} labels but {path} has more items");
                    row = WithLabel(row, labels[docs.Count]);
                }
                try { docs.Add(task.ProcessDoc(row, docs.Count)); }
                catch (InvalidDataException e) { throw new InvalidDataException($"{path}:{lineNumber}: {e.Message}"); }
            }
        }
        if (labels != null && labels.Length != docs.Count)
            throw new InvalidDataException($"{labelsPath} has {labels.Length} labels for {docs.Count} items in {path}");
        if (docs.Count == 0) throw new InvalidDataException($"{path} holds no items");
        return docs;
    }

    private static string? ReadLine(StreamReader reader, string path, int lineNumber)
    {
        var sb = new StringBuilder();
        while (true)
        {
            int c = reader.Read();
            if (c < 0) return sb.Length == 0 ? null : sb.ToString();
            if (c == '\n') return sb.ToString();
            if (sb.Length >= MaxLineChars) throw new InvalidDataException($"{path}:{lineNumber}: line longer than {MaxLineChars} characters");
            sb.Append((char)c);
        }
    }

    private static int[] ReadLabels(string path)
    {
        var labels = new List<int>();
        int lineNumber = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNumber++;
            string line = raw.Trim();
            if (line.Length == 0) continue;
            if (!int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out int v))
                throw new InvalidDataException($"{path}:{lineNumber}: label '{line}' is not a whole number");
            labels.Add(v);
        }
        return [.. labels];
    }

    /// <summary>The row with "label" set, as the Hugging Face PIQA rows carry it.</summary>
    private static JsonElement WithLabel(JsonElement row, int label)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer))
        {
            w.WriteStartObject();
            foreach (var p in row.EnumerateObject())
                if (p.Name != "label") p.WriteTo(w);
            w.WriteNumber("label", label);
            w.WriteEndObject();
        }
        using var doc = JsonDocument.Parse(buffer.ToArray());
        return doc.RootElement.Clone();
    }
}
