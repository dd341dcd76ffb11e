package funnelpulse;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's checksummed local file system (`file://`), except that it sets permissions through
 * java.nio instead of starting a `chmod` process.
 *
 * Without Hadoop's native library (pyspark from pip has none), RawLocalFileSystem runs the
 * `chmod` command for every file and directory a write creates: about 1,600 processes for a
 * month's batch run, 3 to 6 ms each from a large JVM (measured, docs/performance.md). The bits
 * set are the same; only the sticky bit, which java.nio cannot set, still goes through Hadoop's
 * own code.
 *
 * Compiled at the first local session by funnelpulse_dagster/jvm (with Janino, which Spark
 * ships), so the project needs no JDK.
 */
public class LocalFileSystemWithoutForks extends LocalFileSystem {
    public LocalFileSystemWithoutForks() {
        super(new Raw());
    }

    public static class Raw extends RawLocalFileSystem {
        // bit i of a POSIX mode (least significant first) and the permission it grants
        private static final PosixFilePermission[] BITS = {
            PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
            PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
            PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
        };
        private static final int STICKY = 01000;

        public void setPermission(Path p, FsPermission permission) throws IOException {
            int mode = permission.toShort();
            if ((mode & STICKY) != 0) {
                super.setPermission(p, permission);
                return;
            }
            Set granted = EnumSet.noneOf(PosixFilePermission.class);
            for (int i = 0; i < BITS.length; i++) {
                if ((mode & (1 << i)) != 0) {
                    granted.add(BITS[i]);
                }
            }
            Files.setPosixFilePermissions(pathToFile(p).toPath(), granted);
        }
    }
}
