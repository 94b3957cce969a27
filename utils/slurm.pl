#!/usr/bin/env perl
# utils/slurm.pl: run a (possibly array) job on a SLURM cluster with the same interface and log
# format as run.pl, following kaldi-asr/kaldi, egs/wsj/s5/utils/parallel/slurm.pl.
#
# Usage: slurm.pl [options] [JOB=1:N] <log-file> <command...>
#   Options: --config FILE (default conf/slurm.conf if it exists, else the built-in config below),
#            --mem X, --num-threads N, --gpu N, --time T, --max-jobs-run N, and any other option
#            the config file defines.
# The whole range is submitted as ONE array job (sbatch --array=1-N[%max-jobs-run]). The batch
# script and SLURM's own output go to <log-dir>/q/ (exp/x/log/q collapses to exp/x/q). Each task
# writes its log exactly as run.pl does and then a status file q/done.<name>.<task>; slurm.pl polls
# for those files, then reports "slurm.pl: k / N failed, log is in <log>" and exits 1 on failure.
#
# Config file lines (as in Kaldi):
#   command <submit command>          e.g. command sbatch --export=PATH
#   option NAME=* <flags with $0>     $0 is replaced by the value given as --NAME VALUE
#   option NAME=VALUE <flags>         an exact value overrides the NAME=* rule (flags may be empty)
#   default NAME=VALUE                used when --NAME is not given
# Option names map '-' to '_': --num-threads N is num_threads.
use strict;
use warnings;
$SIG{__DIE__} = sub { print STDERR $_[0]; exit 1; };   # every error exits with status 1
use Cwd qw(getcwd);
use File::Path qw(make_path);
use File::Basename qw(dirname basename);
use Time::HiRes qw(sleep);

my $default_config = <<'CONF';
command sbatch --export=PATH --ntasks-per-node=1
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
default gpu=0
option gpu=0
option gpu=* -p gpu --gres=gpu:$0
CONF

my $config = "conf/slurm.conf";
my $config_given = 0;
my $max_jobs_run;
my %cli_opts;        # name -> value
my @cli_order;
my $jobname;
my ($jobstart, $jobend) = (1, 1);
my $array_job = 0;

sub usage {
  print STDERR "Usage: slurm.pl [--config conf/slurm.conf] [--mem X] [--num-threads N] [--gpu N] "
             . "[--time T] [--max-jobs-run N] [JOB=1:N] <log-file> <command...>\n";
  exit 1;
}

while (@ARGV >= 2) {
  my $arg = $ARGV[0];
  if ($arg =~ /^--([\w-]+)$/) {
    my $name = $1; $name =~ s/-/_/g;
    shift @ARGV; my $value = shift @ARGV;
    if ($name eq "config") { $config = $value; $config_given = 1; }
    elsif ($name eq "max_jobs_run") {
      $value =~ /^\d+$/ && $value > 0
        or die "slurm.pl: invalid value '$value' for --max-jobs-run (expected a positive integer)\n";
      $max_jobs_run = $value;
    } else {
      push @cli_order, $name unless exists $cli_opts{$name};
      $cli_opts{$name} = $value;
    }
  } elsif ($arg eq "-tc") {
    shift @ARGV; $max_jobs_run = shift @ARGV;
    $max_jobs_run =~ /^\d+$/ && $max_jobs_run > 0
      or die "slurm.pl: invalid value '$max_jobs_run' for -tc (expected a positive integer)\n";
  } elsif ($arg =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
    ($jobname, $jobstart, $jobend) = ($1, $2, $3);
    $array_job = 1; shift @ARGV;
    $jobstart >= 1 or die "slurm.pl: array jobs must start at index 1 or higher, got $arg\n";
    $jobend >= $jobstart or die "slurm.pl: empty job range $arg\n";
  } elsif ($arg =~ /^([A-Za-z_]\w*)=(\d+)$/) {
    ($jobname, $jobstart, $jobend) = ($1, $2, $2);
    $array_job = 1; shift @ARGV;
  } else {
    last;
  }
}
usage() if @ARGV < 2;

my $logfile = shift @ARGV;
if ($array_job && $jobend > $jobstart && index($logfile, $jobname) < 0) {
  die "slurm.pl: you are running an array job $jobname=$jobstart:$jobend but the log name "
    . "'$logfile' does not contain $jobname\n";
}

my $cmd = "";
foreach my $x (@ARGV) {
  if ($x =~ /^\S+$/) { $cmd .= $x . " "; }
  elsif ($x !~ /'/) { $cmd .= "'" . $x . "' "; }
  else { (my $y = $x) =~ s/(["\\\$`])/\\$1/g; $cmd .= "\"" . $y . "\" "; }
}
$cmd =~ s/ $//;

# ---- read the config and translate the options into sbatch flags ----
my $config_text;
if (-f $config) {
  open(my $cf, "<", $config) or die "slurm.pl: cannot read config $config: $!\n";
  local $/; $config_text = <$cf>; close($cf);
} elsif ($config_given) {
  die "slurm.pl: config file $config (from --config) does not exist\n";
} else {
  $config_text = $default_config; $config = "built-in default config";
}

my $submit_cmd;
my (%opt_star, %opt_exact, %defaults, %known);
my $lineno = 0;
foreach my $line (split /\n/, $config_text) {
  $lineno++;
  $line =~ s/#.*$//; $line =~ s/^\s+//; $line =~ s/\s+$//;
  next if $line eq "";
  if ($line =~ /^command\s+(.+)$/) { $submit_cmd = $1; }
  elsif ($line =~ /^option\s+(\w+)=\*\s*(.*)$/) { $opt_star{$1} = $2; $known{$1} = 1; }
  elsif ($line =~ /^option\s+(\w+)=(\S+)\s*(.*)$/) { $opt_exact{"$1=$2"} = $3; $known{$1} = 1; }
  elsif ($line =~ /^default\s+(\w+)=(\S+)$/) { $defaults{$1} = $2; $known{$1} = 1; }
  else { die "slurm.pl: $config:$lineno: cannot parse config line '$line'\n"; }
}
defined $submit_cmd or die "slurm.pl: $config: no 'command' line\n";

foreach my $name (keys %defaults) {
  next if exists $cli_opts{$name};
  $cli_opts{$name} = $defaults{$name};
  push @cli_order, $name;
}
my @flags;
foreach my $name (@cli_order) {
  my $value = $cli_opts{$name};
  if (exists $opt_exact{"$name=$value"}) {
    push @flags, $opt_exact{"$name=$value"} if $opt_exact{"$name=$value"} ne "";
  } elsif (exists $opt_star{$name}) {
    (my $f = $opt_star{$name}) =~ s/\$0/$value/g;
    push @flags, $f if $f ne "";
  } else {
    (my $o = $name) =~ s/_/-/g;
    die "slurm.pl: option --$o is not defined in the config"
      . ($known{$name} ? " for value '$value'" : "") . " ($config)\n";
  }
}

# ---- write the batch script ----
my $logdir = dirname($logfile);
my $qdir = "$logdir/q";
$qdir =~ s{(^|/)(log|LOG)/+q$}{$1q};
make_path($logdir) unless -d $logdir;
make_path($qdir) unless -d $qdir;
my $base = basename($logfile);
if ($array_job) { $base =~ s/\.\Q$jobname\E//g; $base =~ s/\Q$jobname\E//g; }
$base =~ s/\.log$//;
$base = "job" if $base eq "";
my $script = "$qdir/$base.sh";
my $cwd = getcwd();

sub sq { my ($s) = @_; $s =~ s/'/'\\''/g; return "'$s'"; }

my $name_for_subst = $array_job ? $jobname : "";
my $nd = $jobend - $jobstart + 1;
open(my $sf, ">", $script) or die "slurm.pl: cannot write $script: $!\n";
print $sf "#!/bin/bash\n";
print $sf "# Written by slurm.pl: one task of the array job; JOB = SLURM_ARRAY_TASK_ID + offset.\n";
print $sf "cd " . sq($cwd) . " || exit 1\n";
print $sf "task=\$(( \${SLURM_ARRAY_TASK_ID:-1} + " . ($jobstart - 1) . " ))\n";
print $sf "cmd_template=" . sq($cmd) . "\n";
print $sf "log_template=" . sq($logfile) . "\n";
print $sf "jobname=" . sq($name_for_subst) . "\n";
print $sf "if [ -n \"\$jobname\" ]; then cmd=\${cmd_template//\"\$jobname\"/\$task}; log=\${log_template//\"\$jobname\"/\$task};\n";
print $sf "else cmd=\$cmd_template; log=\$log_template; fi\n";
print $sf "mkdir -p \"\$(dirname \"\$log\")\"\n";
print $sf "{ echo \"# \$cmd\"; echo \"# Started at \$(date)\"; } > \"\$log\"\n";
print $sf "start=\$(date +%s)\n";
print $sf "bash -c \"set -o pipefail; \$cmd\" < /dev/null >> \"\$log\" 2>&1\n";
print $sf "ret=\$?\n";
print $sf "elapsed=\$(( \$(date +%s) - start ))\n";
print $sf "echo \"# Accounting: time=\$elapsed threads=1\" >> \"\$log\"\n";
print $sf "echo \"# Ended (code \$ret) at \$(date), elapsed time \$elapsed seconds\" >> \"\$log\"\n";
print $sf "done_file=" . sq("$qdir/done.$base") . ".\$task\n";
print $sf "echo \"\$ret\" > \"\$done_file.tmp.\$\$\" && mv \"\$done_file.tmp.\$\$\" \"\$done_file\"\n";
print $sf "exit \$ret\n";
close($sf);
chmod 0755, $script;

for (my $t = $jobstart; $t <= $jobend; $t++) { unlink("$qdir/done.$base.$t"); }

my $array_opt = "--array=1-$nd" . (defined $max_jobs_run ? "%$max_jobs_run" : "");
my $submit = "$submit_cmd " . join(" ", @flags) . " -J " . sq($base) . " -o " . sq("$qdir/$base-%a.out")
           . " $array_opt " . sq($script);
my $out = `$submit 2>&1`;
if ($? != 0) {
  print STDERR "slurm.pl: error submitting jobs to the queue (return status was $?)\n";
  print STDERR "slurm.pl: command was: $submit\nslurm.pl: output was: $out";
  exit 1;
}
my $slurm_id = ($out =~ /Submitted batch job (\d+)/) ? $1 : undef;
defined $slurm_id or print STDERR "slurm.pl: warning: could not find the job id in sbatch's output: $out";

# ---- wait for every task's done file ----
my $wait = 0.1;
my $have_squeue = (system("command -v squeue >/dev/null 2>&1") == 0);
my $last_check = time();
my $gone_since;
while (1) {
  my $missing = 0;
  for (my $t = $jobstart; $t <= $jobend; $t++) { $missing++ unless -f "$qdir/done.$base.$t"; }
  last if $missing == 0;
  sleep($wait);
  $wait = $wait * 1.5 > 5 ? 5 : $wait * 1.5;
  if ($have_squeue && defined $slurm_id && time() - $last_check >= 30) {
    $last_check = time();
    my $q = `squeue -h -j $slurm_id 2>/dev/null`;
    if ($? == 0 && $q =~ /^\s*$/) {
      $gone_since //= time();
      if (time() - $gone_since > 60) {     # grace period for shared-filesystem latency
        print STDERR "slurm.pl: job $slurm_id left the queue without finishing $missing task(s)\n";
        last;
      }
    } else { undef $gone_since; }
  }
}

my ($num_failed, $first_failed) = (0, undef);
for (my $t = $jobstart; $t <= $jobend; $t++) {
  my $f = "$qdir/done.$base.$t";
  my $code = 1;
  if (open(my $fh, "<", $f)) { my $l = <$fh>; close($fh); chomp $l if defined $l; $code = $l if defined $l && $l =~ /^\d+$/; }
  unlink($f);
  if ($code != 0) { $num_failed++; $first_failed //= $t; }
}
if ($num_failed > 0) {
  my $flog = $logfile;
  $flog =~ s/\Q$jobname\E/$first_failed/g if $array_job;
  print STDERR "slurm.pl: $num_failed / $nd failed, log is in $flog\n";
  exit 1;
}
exit 0;
