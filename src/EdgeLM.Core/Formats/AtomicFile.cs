namespace EdgeLM.Formats;

/// <summary>Writes a file so that readers see either the old file or the complete new one, never a partial one.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"output folder does not exist: {dir}");
        if (Directory.Exists(full)) throw new IOException($"output path is a folder: {path}");
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }
}
