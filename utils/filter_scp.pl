#!/usr/bin/env perl
# utils/filter_scp.pl: keep the lines of a table whose key is listed in an id list, as Kaldi's
# utils/filter_scp.pl does.
# Usage: filter_scp.pl [--exclude] [-f N] <id-list> [<in.scp>] > out.scp
#   <id-list>: ids in the first field of each line; <in.scp> (or stdin): lines kept in their order
#   when their field N (default 1) is an id (--exclude: when it is not).
use strict;
use warnings;
my ($exclude, $field) = (0, 1);
while (@ARGV && $ARGV[0] =~ /^-/) {
  my $o = shift @ARGV;
  if ($o eq "--exclude") { $exclude = 1; }
  elsif ($o eq "-f") { $field = shift @ARGV; defined $field && $field =~ /^\d+$/ && $field >= 1
                         or die "filter_scp.pl: -f needs a positive field number\n"; }
  else { die "filter_scp.pl: unknown option $o\nUsage: filter_scp.pl [--exclude] [-f N] <id-list> [<in.scp>]\n"; }
}
@ARGV == 1 || @ARGV == 2 or die "Usage: filter_scp.pl [--exclude] [-f N] <id-list> [<in.scp>] > out.scp\n";
my $idlist = shift @ARGV;
open(my $fh, "<", $idlist) or die "filter_scp.pl: cannot open id list $idlist: $!\n";
my %seen;
while (<$fh>) { my @F = split; $seen{$F[0]} = 1 if @F; }
close($fh);
while (my $line = <>) {
  my @F = split(" ", $line);
  next unless @F >= $field;
  my $in = exists $seen{$F[$field - 1]};
  print $line if ($in xor $exclude);
}
