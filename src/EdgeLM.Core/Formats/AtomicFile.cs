namespace EdgeLM.Formats;

/// <summary>
/// Writes a file so that readers only ever see the old file or the complete new one: the content goes to
/// <c>&lt;path&gt;.tmp-&lt;guid&gt;</c> in the same folder (same volume, so the rename is atomic), is flushed to disk,
/// then replaces the target. The temporary file is deleted if anything fails.
/// </summary>
public static class AtomicFile
{
    public static void Write(string path, Action<FileStream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full) ?? ".";
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"folder not found: {dir}");
        string tmp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                // A crash after the rename must not leave a renamed-but-empty file behind.
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
